// Package install holds xvs_install, a BPF_PROG_TYPE_SYSCALL program that
// installs a batch of new connections in one run (one syscall instead of
// about five per conn), and its bpf2go bindings, committed so that a
// plain go build needs no clang. Package maps loads it against the
// datapath's live maps.
package install

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type inst -type inst_batch -type inst_args Install install.c -- -I/usr/include/x86_64-linux-gnu
