// Package expire holds xvs_expire, a BPF_PROG_TYPE_SYSCALL program that
// expires a batch of connections in one run (one syscall instead of about
// seven per conn), and its bpf2go bindings, committed so that a plain go
// build needs no clang. Package maps loads it against the datapath's live
// maps.
package expire

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type cand -type batch -type args -type sweep_args Expire expire.c -- -I/usr/include/x86_64-linux-gnu
