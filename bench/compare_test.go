package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"xvs/testutil"
)

var (
	compare     = flag.Bool("compare", false, "run the load-balancer comparison (make bench)")
	xvsBin      = flag.String("xvsbin", "", "directory with xvsd and xvsadm (empty: no xvs columns)")
	goBench     = flag.String("gobench", "", "go test -bench output of ./bpf and ./sched to merge")
	rawOut      = flag.String("out", "", "file for the raw figures (default bench-raw-TIME.tsv)")
	tableOut    = flag.String("table", "", "also write the summary table to this file")
	only        = flag.String("only", "", "comma-separated balancers to run, in order, repeats allowed (their figures pool): forward,nft,xvs-tc,ref,xvs (default all; none: only the in-process figures)")
	reps        = flag.Int("reps", 3, "repetitions of each measurement")
	connTable   = flag.Uint("conns", 1<<20, "connection-table size for the scale figure (0: skip)")
	prefix      = flag.String("prefix", "", "namespace name prefix (default: random xvsb-XXXXXX)")
	workDir     = flag.String("workdir", "", "directory for xvsd's files (default: temp dir)")
	floodPin    = flag.Bool("flood-pin-xvsd", false, "flood run: pin xvsd to the generator's CPU, away from the director's receive CPU")
	floodBudget = flag.Uint64("flood-budget", 0, "flood run: xvsd's first-packet budget (default FirstPacketBudget; the flood stays 5x FirstPacketBudget)")
	genPPS      = flag.Uint64("gen-pps", DefaultConfig().GenPPS, "established and flood runs: pace the generator to this many frames/s, above what the fastest balancer forwards (0: as fast as it goes)")
	workers     = flag.Int("workers", 8, "concurrent clients of the new-connection rate")
	metrics     = flag.String("metrics", "", "comma-separated measurements: conn,iperf,udp,flood,newflow (default all)")
	xvsConnMax  = flag.Uint("xvs-conn-max", 0, "xvsd's --conn-max (0: its default)")
	udpWait     = flag.Duration("udp-wait", 0, "pause before the established runs, after the connection runs (135s: their conns expire first)")
)

// TestCompare is `make bench`: every balancer in turn on one topology,
// then the summary table on stdout and the raw figures in a file.
func TestCompare(t *testing.T) {
	if !*compare {
		t.Skip("the comparison runs from make bench (go test ./bench -args -compare)")
	}
	testutil.NeedRoot(t)
	cfg := DefaultConfig()
	cfg.Bin, cfg.GoBench, cfg.Reps, cfg.ConnEntries = *xvsBin, *goBench, *reps, uint32(*connTable)
	cfg.Prefix, cfg.WorkDir = *prefix, *workDir
	cfg.Workers = *workers
	cfg.FloodPinXvsd = *floodPin
	cfg.FloodBudget = *floodBudget
	cfg.GenPPS = *genPPS
	cfg.XvsConnMax, cfg.UDPWait = uint32(*xvsConnMax), *udpWait
	if *metrics != "" {
		cfg.Metrics = strings.Split(*metrics, ",")
	}
	switch *only {
	case "":
	case "none":
		cfg.Balancers = nil
	default:
		cfg.Balancers = strings.Split(*only, ",")
	}
	out := *rawOut
	if out == "" {
		out = fmt.Sprintf("bench-raw-%s.tsv", time.Now().UTC().Format("20060102-150405"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	res := NewResults()
	start := time.Now()
	Run(ctx, t, cfg, res)

	header := fmt.Sprintf("xvs benchmarks %s\nmachine: %s, %d CPUs\nbalancers: %s, %d repetitions, took %v",
		time.Now().UTC().Format(time.RFC3339), kernel(), runtime.NumCPU(), strings.Join(cfg.Balancers, " "),
		cfg.Reps, time.Since(start).Round(time.Second))
	var raw bytes.Buffer
	if err := res.WriteRaw(&raw, header); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, raw.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var tab bytes.Buffer
	if err := res.Table(&tab, Rows); err != nil {
		t.Fatal(err)
	}
	if *tableOut != "" {
		if err := os.WriteFile(*tableOut, tab.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("\n%s\n\n%s", header, tab.String())
	for _, n := range res.Notes() {
		fmt.Printf("note: %s\n", n)
	}
	fmt.Printf("raw figures written to %s\n", out)
}

func kernel() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "unknown kernel"
	}
	return strings.TrimSpace(string(out))
}
