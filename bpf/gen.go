// Package bpf holds the xvs datapath: the C programs (XDP and TC entries
// sharing inline logic in headers) and their bpf2go bindings, committed so
// that a plain go build needs no clang.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type conn_key -type conn -type rconn -type svc_key -type svc -type stats -type dest -type cfg -type frag_key -type frag -type budget -type ring -type ring_ent -type route -type flow Xvs xvs.c -- -I/usr/include/x86_64-linux-gnu
