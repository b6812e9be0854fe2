package ipvsadm

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ParseRestore parses -R input (the save format, or any ipvsadm command
// lines) and validates all of it before returning: on the first bad line
// it returns no commands and an *Error "line N: <ipvsadm message>" with
// ipvsadm's exit code for that line.
//
// Lines are split into words at blanks, tabs and CRs; the words "ipvsadm"
// and "xvsadm" are dropped wherever they appear; empty lines, lines of
// blanks and lines whose first non-blank character is '#' are skipped
// (xvs accepts the comments the ipvsadm-restore wrapper strips). A -R line
// fails with the "Try ..." line, as in ipvsadm.
func ParseRestore(in io.Reader, r Resolver) ([]Command, error) {
	var cmds []Command
	br := bufio.NewReader(in)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read restore input: %w", err)
		}
		if line == "" && err == io.EOF {
			break
		}
		words := splitRestoreLine(line)
		if len(words) > 0 {
			cmd, perr := parseRestoreLine(words, r)
			if perr != nil {
				return nil, &Error{Code: perr.Code, Msg: fmt.Sprintf("line %d: %s", n, perr.Msg)}
			}
			cmd.Line = n
			cmds = append(cmds, *cmd)
		}
		if err == io.EOF {
			break
		}
	}
	return cmds, nil
}

// splitRestoreLine returns the words of a restore line; none for lines
// to skip.
func splitRestoreLine(line string) []string {
	if t := strings.TrimLeft(line, " \t\r\n\v\f"); strings.HasPrefix(t, "#") {
		return nil
	}
	fields := strings.FieldsFunc(line, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\r' || r == '\n'
	})
	words := fields[:0]
	for _, w := range fields {
		if w != "ipvsadm" && w != ProgName {
			words = append(words, w)
		}
	}
	return words
}

func parseRestoreLine(words []string, r Resolver) (*Command, *Error) {
	cmd, err := parse(words, r)
	if err != nil {
		return nil, err
	}
	if cmd.Kind == CmdRestore {
		// ipvsadm refuses -R inside -R to avoid an endless loop.
		return nil, tryHelp()
	}
	return cmd, nil
}
