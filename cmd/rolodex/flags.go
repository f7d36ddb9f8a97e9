package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// flagSet is the flag set of one command. Asked for help (-h, --help), it
// prints the command's usage to stdout and parse returns flag.ErrHelp,
// which exits 0; after a bad flag it prints the error and the usage to
// stderr (exit 2).
type flagSet struct {
	*flag.FlagSet
	stdout, stderr io.Writer
}

// newFlagSet returns the flag set of the command called name (an entry of
// commands). Its usage is the command's synopsis and doc, then its flags;
// a command with more to say sets Usage and writes to Output().
func newFlagSet(name string, stdout, stderr io.Writer) *flagSet {
	f := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
	f.SetOutput(stderr)
	f.Usage = func() {
		f.printSynopsis()
		f.printFlags()
	}
	return f
}

// printSynopsis prints the command's synopsis and doc from commands.
func (f *flagSet) printSynopsis() {
	c, _ := findCommand(f.Name())
	fmt.Fprintf(f.Output(), "%s\n\n%s.\n", strings.TrimSpace("Usage: rolodex "+c.name+" "+c.args), upperFirst(c.doc))
}

// printFlags prints the flags under a "Flags:" heading, if there are any.
func (f *flagSet) printFlags() {
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(f.Output(), "\nFlags:\n")
		f.PrintDefaults()
	}
}

// parse parses args (flags first, then positional arguments). A bad flag
// is a usageError.
func (f *flagSet) parse(args []string) error {
	var out bytes.Buffer
	f.SetOutput(&out)
	err := f.Parse(args)
	f.SetOutput(f.stderr)
	w := f.stderr
	if errors.Is(err, flag.ErrHelp) {
		w = f.stdout
	}
	if _, werr := out.WriteTo(w); werr != nil && err == nil {
		return werr
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return usageError{err.Error()}
	}
	return err
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func (f *flagSet) parseInterleaved(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.parse(args); err != nil {
			return nil, err
		}
		if f.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.Arg(0))
		args = f.Args()[1:]
	}
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
