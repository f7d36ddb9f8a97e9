package routing

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

// partner is a partner's routing configuration, parsed.
type partner struct {
	tenant string
	loc    *time.Location
	// hours[weekday] holds the day's windows in minutes of the wall
	// clock, [start, end); nil hours: always open.
	hours *[7][][2]int
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func parsePartner(c schemas.PartnerRouting) (*partner, error) {
	p := &partner{tenant: c.Tenant, loc: time.UTC}
	if c.Timezone != "" {
		loc, err := time.LoadLocation(c.Timezone)
		if err != nil {
			return nil, fmt.Errorf("partner %s: timezone %q: %w", c.Name, c.Timezone, err)
		}
		p.loc = loc
	}
	if len(c.WorkingHours) == 0 {
		return p, nil
	}
	var h [7][][2]int
	for days, window := range c.WorkingHours {
		ds, err := parseDays(days)
		if err != nil {
			return nil, fmt.Errorf("partner %s: working_hours: %w", c.Name, err)
		}
		w, err := parseWindow(window)
		if err != nil {
			return nil, fmt.Errorf("partner %s: working_hours %s: %w", c.Name, days, err)
		}
		for _, d := range ds {
			h[d] = append(h[d], w)
		}
	}
	p.hours = &h
	return p, nil
}

// parseDays reads "mon-fri", "sat", "mon,wed,fri", "fri-mon" (a range
// wraps past Sunday).
func parseDays(s string) ([]time.Weekday, error) {
	var out []time.Weekday
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(strings.ToLower(part))
		from, to, isRange := strings.Cut(part, "-")
		a, ok := dayNames[from]
		if !ok {
			return nil, fmt.Errorf("day %q: want mon, tue, wed, thu, fri, sat or sun", from)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, ok := dayNames[to]
		if !ok {
			return nil, fmt.Errorf("day %q: want mon, tue, wed, thu, fri, sat or sun", to)
		}
		for d := a; ; d = (d + 1) % 7 {
			out = append(out, d)
			if d == b {
				break
			}
		}
	}
	return out, nil
}

// parseWindow reads "HH:MM-HH:MM" (end after start; 24:00 ends the day).
func parseWindow(s string) ([2]int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return [2]int{}, fmt.Errorf("window %q: want HH:MM-HH:MM", s)
	}
	start, err1 := parseClock(strings.TrimSpace(a))
	end, err2 := parseClock(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || end <= start {
		return [2]int{}, fmt.Errorf("window %q: want HH:MM-HH:MM with the end after the start", s)
	}
	return [2]int{start, end}, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	return hh*60 + mm, nil
}

// open reports whether at (Unix ms) is inside the partner's working hours
// on its wall clock.
func (p *partner) open(at int64) bool {
	if p.hours == nil {
		return true
	}
	t := time.UnixMilli(at).In(p.loc)
	m := t.Hour()*60 + t.Minute()
	for _, w := range p.hours[t.Weekday()] {
		if w[0] <= m && m < w[1] {
			return true
		}
	}
	return false
}

// day is the partner's local date of at: YYYY-MM-DD.
func (p *partner) day(at int64) string {
	return time.UnixMilli(at).In(p.loc).Format(time.DateOnly)
}

// yesterday is the local date before at's.
func (p *partner) yesterday(at int64) string {
	return time.UnixMilli(at).In(p.loc).AddDate(0, 0, -1).Format(time.DateOnly)
}
