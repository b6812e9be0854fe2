// Package expire holds two BPF_PROG_TYPE_SYSCALL programs and their
// bpf2go bindings: xvs_expire expires a batch of connections in one run
// (one syscall instead of about seven per conn), xvs_sweep walks the
// tables in the kernel and expires the idle connections it finds. The
// bindings are committed so that a plain go build needs no clang. Package
// maps loads the programs against the datapath's live maps.
package expire

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type cand -type batch -type args -type sweep_args Expire expire.c -- -I/usr/include/x86_64-linux-gnu
