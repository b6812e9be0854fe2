package bench

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel Bench bench.c -- -I/usr/include/x86_64-linux-gnu
