package identity

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Memory is the memory of the process, in bytes.
type Memory struct {
	// PeakRSS is the largest resident set size seen (Linux /proc; 0
	// elsewhere).
	PeakRSS int64
	// PeakGoMapped is the largest memory the Go runtime had mapped
	// (runtime/metrics /memory/classes/total:bytes): heap, stacks and
	// runtime structures, whether resident or not.
	PeakGoMapped uint64
	// PeakHeapObjects is the largest heap occupied by objects, live or not
	// yet collected (/memory/classes/heap/objects:bytes).
	PeakHeapObjects uint64
	// PeakLiveHeap is the largest heap marked live by a GC
	// (/gc/heap/live:bytes): what the process really needed.
	PeakLiveHeap uint64
}

// memSampler keeps the peaks of a phase; sample is called from one
// goroutine.
type memSampler struct {
	samples []metrics.Sample
	peak    Memory
}

func newMemSampler() *memSampler {
	return &memSampler{samples: []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}}
}

func (m *memSampler) sample() {
	metrics.Read(m.samples)
	vals := [3]uint64{}
	for i, s := range m.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			vals[i] = s.Value.Uint64()
		}
	}
	m.peak.PeakGoMapped = max(m.peak.PeakGoMapped, vals[0])
	m.peak.PeakHeapObjects = max(m.peak.PeakHeapObjects, vals[1])
	m.peak.PeakLiveHeap = max(m.peak.PeakLiveHeap, vals[2])
	if rss, _ := procMemory(); rss > m.peak.PeakRSS {
		m.peak.PeakRSS = rss
	}
}

// procMemory returns the current resident set size (VmRSS) and its peak
// over the life of the process (VmHWM), in bytes; zeros where /proc is
// missing.
func procMemory() (rss, hwm int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				*dst = kb << 10
			}
		}
	}
	return rss, hwm
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// prepare makes a phase start with no garbage of what came before, and
// hands freed memory back to the OS so that the phase's resident set is its
// own. It runs outside the timed part.
func prepare() {
	runtime.GC()
	debug.FreeOSMemory()
}
