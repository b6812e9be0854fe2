package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// Results holds every sample of a run: per metric key and balancer, one
// value per repetition, plus free-form notes.
type Results struct {
	mu      sync.Mutex
	samples map[string]map[string][]float64
	units   map[string]string
	order   []string
	notes   []string
}

// NewResults returns an empty result set.
func NewResults() *Results {
	return &Results{samples: map[string]map[string][]float64{}, units: map[string]string{}}
}

// Add records one sample of metric key for balancer lb.
func (r *Results) Add(key, lb, unit string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.samples[key] == nil {
		r.samples[key] = map[string][]float64{}
		r.order = append(r.order, key)
	}
	r.samples[key][lb] = append(r.samples[key][lb], v)
	r.units[key] = unit
}

// Note records a line for the raw file (errors, skipped metrics,
// context); a multi-line message is joined and cut to stay one line.
func (r *Results) Note(format string, args ...any) {
	n := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	if len(n) > 400 {
		n = n[:400] + "…"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, n)
}

// Notes returns the notes recorded so far.
func (r *Results) Notes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notes)
}

// Median is the median sample of key for lb.
func (r *Results) Median(key, lb string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.samples[key][lb])
	if len(s) == 0 {
		return 0, false
	}
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// WriteRaw writes every sample, one per line (metric, balancer,
// repetition, value, unit, tab-separated), then the notes as comments.
func (r *Results) WriteRaw(w io.Writer, header string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	b.WriteString("metric\tbalancer\trep\tvalue\tunit\n")
	for _, k := range r.order {
		lbs := make([]string, 0, len(r.samples[k]))
		for lb := range r.samples[k] {
			lbs = append(lbs, lb)
		}
		sort.Strings(lbs)
		for _, lb := range lbs {
			for i, v := range r.samples[k][lb] {
				fmt.Fprintf(&b, "%s\t%s\t%d\t%g\t%s\n", k, lb, i+1, v, r.units[k])
			}
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "# note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Row is one line of the summary table: a metric key, the balancer whose
// figure goes in the xvs column, and how values are shown.
type Row struct {
	Label   string
	Key     string
	XVS     string  // "xvs" (XDP mode) or "xvs-tc"
	Scale   float64 // value shown = sample * Scale
	Prec    int     // decimals
	NoRatio bool    // ratios make no sense (loss counts near zero)
}

// Table writes the summary as a Markdown table: metric, xvs, nft, forward, xvs/nft, ref,
// xvs/ref; medians of the repetitions, "-" where there is none.
func (r *Results) Table(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| metric\t| xvs\t| nft\t| forward\t| xvs/nft\t| static ref\t| xvs/ref\t|")
	fmt.Fprintln(tw, "|---\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|")
	for _, row := range rows {
		cell := func(lb string) (string, float64, bool) {
			v, ok := r.Median(row.Key, lb)
			if !ok {
				return "-", 0, false
			}
			s := row.Scale
			if s == 0 {
				s = 1
			}
			return fmtNum(v*s, row.Prec), v, true
		}
		x, xv, xok := cell(row.XVS)
		n, nv, nok := cell("nft")
		f, _, _ := cell("forward")
		ref, rv, rok := cell("ref")
		ratio := func(a, b float64, ok bool) string {
			if !ok || b == 0 || row.NoRatio {
				return "-"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", row.Label, x, n, f,
			ratio(xv, nv, xok && nok), ref, ratio(xv, rv, xok && rok))
	}
	return tw.Flush()
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}
