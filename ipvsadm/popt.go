package ipvsadm

import "strings"

// This file reproduces the parts of libpopt that ipvsadm's command line
// depends on: bundled short options, "--opt=value", "-tVALUE", an optional
// argument taken from the next word unless it starts with '-', leftover
// words collected wherever they appear, and "--" ending the options.

type argKind int

const (
	argNone argKind = iota
	argRequired
	argOptional
)

type optSpec struct {
	long  string
	short byte
	arg   argKind
}

// options is ipvsadm 1.31's popt table.
var options = []optSpec{
	{"add-service", 'A', argNone},
	{"edit-service", 'E', argNone},
	{"delete-service", 'D', argNone},
	{"clear", 'C', argNone},
	{"list", 'L', argNone},
	{"list", 'l', argNone},
	{"zero", 'Z', argNone},
	{"add-server", 'a', argNone},
	{"edit-server", 'e', argNone},
	{"delete-server", 'd', argNone},
	{"set", 0, argNone},
	{"help", 'h', argNone},
	{"version", 'v', argNone},
	{"restore", 'R', argNone},
	{"save", 'S', argNone},
	{"start-daemon", 0, argRequired},
	{"stop-daemon", 0, argRequired},
	{"tcp-service", 't', argRequired},
	{"udp-service", 'u', argRequired},
	{"sctp-service", 0, argRequired},
	{"fwmark-service", 'f', argRequired},
	{"scheduler", 's', argRequired},
	{"persistent", 'p', argOptional},
	{"netmask", 'M', argRequired},
	{"real-server", 'r', argRequired},
	{"masquerading", 'm', argNone},
	{"ipip", 'i', argNone},
	{"gatewaying", 'g', argNone},
	{"weight", 'w', argRequired},
	{"u-threshold", 'x', argRequired},
	{"l-threshold", 'y', argRequired},
	{"numeric", 'n', argNone},
	{"connection", 'c', argNone},
	{"mcast-interface", 0, argRequired},
	{"syncid", 0, argRequired},
	{"timeout", 0, argNone},
	{"daemon", 0, argNone},
	{"stats", 0, argNone},
	{"rate", 0, argNone},
	{"thresholds", 0, argNone},
	{"persistent-conn", 0, argNone},
	{"nosort", 0, argNone},
	{"sort", 0, argNone},
	{"exact", 'X', argNone},
	{"ipv6", '6', argNone},
	{"ops", 'o', argNone},
	{"pe", 0, argRequired},
	{"sched-flags", 'b', argRequired},
	{"mcast-group", 0, argRequired},
	{"mcast-port", 0, argRequired},
	{"mcast-ttl", 0, argRequired},
	{"sync-maxlen", 0, argRequired},
	{"tun-info", 0, argNone},
	{"tun-type", 0, argRequired},
	{"tun-port", 0, argRequired},
	{"tun-nocsum", 0, argNone},
	{"tun-csum", 0, argNone},
	{"tun-remcsum", 0, argNone},
}

func longSpec(name string) *optSpec {
	for i := range options {
		if options[i].long == name {
			return &options[i]
		}
	}
	return nil
}

func shortSpec(c byte) *optSpec {
	for i := range options {
		if options[i].short == c && c != 0 {
			return &options[i]
		}
	}
	return nil
}

// poptEvent is one option returned by the tokenizer.
type poptEvent struct {
	spec   *optSpec
	arg    string
	hasArg bool
	word   string // the command-line word it came from (poptBadOption)
}

type popt struct {
	args       []string
	next       int
	bundle     string // short options left in the current word
	bundleWord string
	leftovers  []string
	noMore     bool // "--" seen
}

// popt's error strings.
const (
	poptNoArg       = "missing argument"
	poptBadOpt      = "unknown option"
	poptUnwantedArg = "option does not take an argument"
)

// nextOpt returns the next option, nil at the end, or an error that
// ipvsadm prints as "<word>: <popt message>" with status 255.
func (p *popt) nextOpt() (*poptEvent, *Error) {
	for {
		if p.bundle != "" {
			word := p.bundleWord
			spec := shortSpec(p.bundle[0])
			rest := p.bundle[1:]
			p.bundle = ""
			if spec == nil {
				return nil, poptError(word, poptBadOpt)
			}
			// popt skips an '=' right after a short option letter; what
			// follows it, even nothing, is then the argument.
			eq := strings.HasPrefix(rest, "=")
			rest = strings.TrimPrefix(rest, "=")
			if spec.arg == argNone {
				p.bundle = rest
				return &poptEvent{spec: spec, word: word}, nil
			}
			if rest != "" || eq {
				return &poptEvent{spec: spec, arg: rest, hasArg: true, word: word}, nil
			}
			return p.takeArg(spec, word)
		}
		if p.next >= len(p.args) {
			return nil, nil
		}
		w := p.args[p.next]
		p.next++
		if p.noMore || len(w) < 2 || w[0] != '-' {
			p.leftovers = append(p.leftovers, w)
			continue
		}
		if w == "--" {
			p.noMore = true
			continue
		}
		if strings.HasPrefix(w, "--") {
			name := w[2:]
			var val string
			hasVal := false
			if i := strings.IndexByte(name, '='); i >= 0 {
				val, hasVal = name[i+1:], true
				name = name[:i]
			}
			spec := longSpec(name)
			if spec == nil {
				return nil, poptError(w, poptBadOpt)
			}
			if spec.arg == argNone {
				if hasVal {
					return nil, poptError(w, poptUnwantedArg)
				}
				return &poptEvent{spec: spec, word: w}, nil
			}
			if hasVal {
				return &poptEvent{spec: spec, arg: val, hasArg: true, word: w}, nil
			}
			return p.takeArg(spec, w)
		}
		p.bundle = w[1:]
		p.bundleWord = w
	}
}

// takeArg takes an option's argument from the next word.
func (p *popt) takeArg(spec *optSpec, word string) (*poptEvent, *Error) {
	if spec.arg == argOptional {
		if p.next < len(p.args) && !strings.HasPrefix(p.args[p.next], "-") {
			a := p.args[p.next]
			p.next++
			return &poptEvent{spec: spec, arg: a, hasArg: true, word: word}, nil
		}
		return &poptEvent{spec: spec, word: word}, nil
	}
	if p.next >= len(p.args) {
		return nil, poptError(word, poptNoArg)
	}
	a := p.args[p.next]
	p.next++
	return &poptEvent{spec: spec, arg: a, hasArg: true, word: word}, nil
}

func poptError(word, msg string) *Error {
	return &Error{Code: 255, Msg: word + ": " + msg}
}
