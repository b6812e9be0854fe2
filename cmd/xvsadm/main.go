// Command xvsadm administers xvsd with ipvsadm's command line and output
// formats: an ipvsadm script works with ipvsadm replaced by xvsadm.
package main

import "os"

func main() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) }
