// Command xvsd is the xvs daemon: it attaches the datapath to the
// interfaces, schedules first packets, expires connections and serves
// xvsadm over a unix socket.
package main

import "os"

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }
