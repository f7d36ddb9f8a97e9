package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// cmdVersion is "rolodex version": what the binary was built from.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("version: unexpected argument %q", fs.Arg(0))}
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	_, err := io.WriteString(stdout, versionText(bi))
	return err
}

// versionText describes a build: the main module's version (go build and
// go install stamp it from the VCS tag or commit), the VCS revision and
// time, and the Go toolchain and platform.
func versionText(bi *debug.BuildInfo) string {
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rolodex %s\n", version)
	if rev := settings["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "  revision: %s", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		if settings["vcs.modified"] == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	} else {
		b.WriteString("  revision: unknown (go build and go install in a git checkout record it; go run and go test do not)\n")
	}
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = "unknown"
	}
	fmt.Fprintf(&b, "  go:       %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
