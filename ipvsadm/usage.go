package ipvsadm

import (
	"fmt"
	"io"
)

const usageText = `Usage:
  %[1]s -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  %[1]s -D virtual-service
  %[1]s -C
  %[1]s -R
  %[1]s -S [-n]
  %[1]s -a|e virtual-service -r server-address -m [options]
  %[1]s -d virtual-service -r server-address
  %[1]s -L|l [virtual-service] [options]
  %[1]s -Z [virtual-service]
  %[1]s --set tcp tcpfin udp
  %[1]s -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --help            -h        display this help message
  --version         -v        display the version

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq,
                                      the default scheduler is %[2]s.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --masquerading -m                   masquerading (NAT)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact        -X                   expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)

Note: %[1]s is an LVS-NAT director: only masquerading (-m) is supported, and
-m must be given with -a. Gatewaying (-g, ipvsadm's default) and tunneling
(-i, --tun-*), firewall-mark (-f, -6) and SCTP (--sctp-service) services,
--pe and --ops (-o) are accepted as ipvsadm accepts them and then refused
with a message. The connection sync daemons (--start-daemon, --stop-daemon,
-L --daemon) speak IPVS's protocol.
`

// Usage writes ipvsadm-style help naming prog, listing what xvs supports
// and a note on what it refuses.
func Usage(w io.Writer, prog string) {
	if prog == "" {
		prog = ProgName
	}
	fmt.Fprintf(w, usageText, prog, DefaultScheduler)
}
