package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolodex/rolodex/schemas"
)

var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	viewsRule    = `events("page.viewed", duration("168h")) >= 3`
	lapsedRule   = `last("purchase.completed") < now - duration("2160h")`
	campinasRule = `traits.city == "Campinas" && "email" in channels`
	formRule     = `counters["form.submitted"] > 0 && !blacklisted`
)

func mustCompile(t testing.TB, cond string) *Program {
	t.Helper()
	p, err := Compile(cond)
	if err != nil {
		t.Fatalf("Compile(%s): %v", cond, err)
	}
	return p
}

// profile is a hand-made profile as the identity stage folds it.
func profile(traits map[string]string, channels map[string][]string, counters map[string]int64, blacklisted bool) *schemas.Profile {
	p := &schemas.Profile{ID: "p1", Tenant: "t", Traits: map[string]json.RawMessage{}, Channels: channels,
		Counters: counters, Blacklisted: blacklisted, Identifiers: map[string][]string{}}
	for k, v := range traits {
		p.Traits[k] = json.RawMessage(v)
	}
	return p
}

func TestExamples(t *testing.T) {
	views := map[string][]time.Time{"page.viewed": {base.Add(-time.Hour), base.Add(-48 * time.Hour), base.Add(-100 * time.Hour)}}
	oldest := base.Add(-100 * time.Hour)
	purchase := base.Add(-10 * 24 * time.Hour)
	bought := map[string][]time.Time{"purchase.completed": {purchase}}
	campinas := profile(map[string]string{"city": `"Campinas"`}, map[string][]string{"email": {"a@b.c"}}, nil, false)
	for _, c := range []struct {
		name  string
		cond  string
		p     *schemas.Profile
		times map[string][]time.Time
		now   time.Time
		want  bool
	}{
		{"three views in the window", viewsRule, profile(nil, nil, nil, false), views, base, true},
		{"the oldest view 1ms before it leaves", viewsRule, profile(nil, nil, nil, false), views, oldest.Add(168*time.Hour - time.Millisecond), true},
		{"the oldest view left at exactly t+168h", viewsRule, profile(nil, nil, nil, false), views, oldest.Add(168 * time.Hour), false},
		{"two views only", viewsRule, profile(nil, nil, nil, false), map[string][]time.Time{"page.viewed": views["page.viewed"][:2]}, base, false},
		{"no views", viewsRule, profile(nil, nil, nil, false), nil, base, false},
		{"never purchased", lapsedRule, profile(nil, nil, nil, false), nil, base, true},
		{"purchased 10 days ago", lapsedRule, profile(nil, nil, nil, false), bought, base, false},
		{"purchase exactly 90 days old", lapsedRule, profile(nil, nil, nil, false), bought, purchase.Add(2160 * time.Hour), false},
		{"purchase 90 days and 1ms old", lapsedRule, profile(nil, nil, nil, false), bought, purchase.Add(2160*time.Hour + time.Millisecond), true},
		{"Campinas with email", campinasRule, campinas, nil, base, true},
		{"Campinas, email invalid", campinasRule, profile(map[string]string{"city": `"Campinas"`}, map[string][]string{"email": {}}, nil, false), nil, base, false},
		{"Campinas, sms only", campinasRule, profile(map[string]string{"city": `"Campinas"`}, map[string][]string{"sms": {"+5519"}}, nil, false), nil, base, false},
		{"São Paulo with email", campinasRule, profile(map[string]string{"city": `"São Paulo"`}, map[string][]string{"email": {"a@b.c"}}, nil, false), nil, base, false},
		{"a form submitted", formRule, profile(nil, nil, map[string]int64{"form.submitted": 2}, false), nil, base, true},
		{"a form submitted, blacklisted", formRule, profile(nil, nil, map[string]int64{"form.submitted": 2}, true), nil, base, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustCompile(t, c.cond)
			got, err := p.Eval(FromProfile(c.p, c.times, c.now))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("%s at %s = %v, want %v", c.cond, c.now, got, c.want)
			}
		})
	}
	// A type the profile has no event of counts 0: false, not an error;
	// "in" still tells whether the profile has any.
	for cond, want := range map[string]bool{formRule: false, `counters["form.submitted"] == 0`: true, `"form.submitted" in counters`: false, `counters.size() == 0`: true} {
		got, err := mustCompile(t, cond).Eval(FromProfile(profile(nil, nil, nil, false), nil, base))
		if err != nil || got != want {
			t.Fatalf("%s on a profile without the counter = %v, %v; want %v", cond, got, err, want)
		}
	}
}

func TestEventTypes(t *testing.T) {
	for _, c := range []struct {
		cond string
		want map[string]Need
		vars []string
	}{
		{viewsRule, map[string]Need{"page.viewed": {3, 168 * time.Hour}}, nil},
		{lapsedRule, map[string]Need{"purchase.completed": {1, 0}}, []string{"now"}},
		{campinasRule, map[string]Need{}, []string{"channels", "traits"}},
		{`events("a", duration("1h")) > 4 || 7 <= events("a", duration("2h")) || last("b") > first_seen`,
			map[string]Need{"a": {7, 2 * time.Hour}, "b": {1, 0}}, []string{"first_seen"}},
		{`events("a", duration("1h")) == 0 && events("b", duration("1m")) < 100 && events("c", duration("1s")) != 99`,
			map[string]Need{"a": {1, time.Hour}, "b": {100, time.Minute}, "c": {100, time.Second}}, nil},
		{`events("a", duration("1h")) >= -5`, map[string]Need{"a": {0, time.Hour}}, nil},
	} {
		p := mustCompile(t, c.cond)
		if fmt.Sprint(p.EventTypes()) != fmt.Sprint(c.want) {
			t.Errorf("%s: EventTypes = %v, want %v", c.cond, p.EventTypes(), c.want)
		}
		if fmt.Sprint(p.Vars()) != fmt.Sprint(c.vars) {
			t.Errorf("%s: Vars = %v, want %v", c.cond, p.Vars(), c.vars)
		}
	}
}

func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		cond   string
		reason string
		pos    Pos
		says   string
	}{
		{`traits.city == `, ReasonSyntax, Pos{1, 16}, "mismatched input"},
		{"traits.city == \"a\" &&\n  (blacklisted", ReasonSyntax, Pos{2, 15}, "missing ')'"},
		{`tags == "x"`, ReasonType, Pos{1, 6}, "no matching overload"},
		{`unknown_var > 3`, ReasonType, Pos{1, 1}, "undeclared reference"},
		{`events("a") >= 1`, ReasonType, Pos{1, 7}, "no matching overload"},
		{`event_count + 1`, ReasonResult, Pos{1, 1}, "of type int"},
		{`traits.vip`, ReasonResult, Pos{1, 1}, "of type dyn"},
		{`tags.exists(a, channels.exists(b, identifiers.exists(c, a + b == c)))`, ReasonCost, Pos{1, 1}, "exceeds the limit 100000"},
		{`events(traits.kind, duration("1h")) >= 1`, ReasonEvents, Pos{1, 8}, "string literal"},
		{`events("a", duration("1h") + duration("1m")) >= 1`, ReasonEvents, Pos{1, 13}, "literal duration"},
		{`events("a", duration("-1h")) >= 1`, ReasonEvents, Pos{1, 13}, "positive"},
		{`events("a", duration("1h")) >= 101`, ReasonEvents, Pos{1, 1}, "needs the latest 101 event times"},
		{`true && events("a", duration("1h")) > 100`, ReasonEvents, Pos{1, 9}, "needs the latest 101 event times"},
		{`events("a", duration("1h")) <= 100`, ReasonEvents, Pos{1, 1}, "needs the latest 101"},
		{`events("a", duration("1h")) >= event_count`, ReasonEvents, Pos{1, 32}, "integer literal"},
		{`events("a", duration("1h")) * 2 >= 4`, ReasonEvents, Pos{1, 1}, "one side of a comparison"},
		{`[events("a", duration("1h"))].size() > 0`, ReasonEvents, Pos{1, 2}, "one side of a comparison"},
		{`last(traits.kind) > first_seen`, ReasonEvents, Pos{1, 6}, "string literal"},
		{`now.getHours() > 8`, ReasonTime, Pos{1, 1}, "now may only be"},
		{"blacklisted ||\nint(now) > 5", ReasonTime, Pos{2, 5}, "now may only be"},
		{`now > timestamp(traits.signup)`, ReasonTime, Pos{1, 1}, "now may only be"},
		{`[now].exists(t, t > first_seen)`, ReasonTime, Pos{1, 2}, "now may only be"},
		{`tags.exists(now, now == "x")`, ReasonType, Pos{1, 1}, "shadows"},
	} {
		t.Run(c.cond, func(t *testing.T) {
			_, err := Compile(c.cond)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Compile(%q) = %v, want an *Error", c.cond, err)
			}
			if re.Reason != c.reason || re.Pos != c.pos || !strings.Contains(re.Message, c.says) {
				t.Fatalf("Compile(%q) = %s %s %q; want %s %s containing %q", c.cond, re.Pos, re.Reason, re.Message, c.pos, c.reason, c.says)
			}
		})
	}
}

func TestAccepted(t *testing.T) {
	for _, cond := range []string{
		viewsRule, lapsedRule, campinasRule, formRule,
		`has(traits.city) && traits.city == "Campinas"`,
		`events("a", duration("1h")) >= 100`,
		`0 < events("a", duration("1h"))`,
		`now - last("a") > duration("24h") && first_seen > now - duration("720h")`,
		`last_seen + duration("1h") >= now`,
		`now > timestamp("2025-01-01T00:00:00Z")`,
		`consent["marketing"] == "granted" && "vip" in tags`,
		`identifiers.exists(k, k == "email") && event_count > 10`,
		`traits.age >= 18 && traits.score > 0.5`,
		`now - first_seen < duration("72h") && consent["marketing"] == "granted"`,
	} {
		if _, err := Compile(cond); err != nil {
			t.Errorf("Compile(%s): %v", cond, err)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	in := FromProfile(profile(map[string]string{"age": `"x"`, "n": `30`}, nil, nil, false), nil, base)
	for _, c := range []struct {
		cond    string
		want    bool
		wantErr string
	}{
		{`traits.city == "Campinas"`, false, "no such key: city"},
		{`has(traits.city) && traits.city == "Campinas"`, false, ""},
		{`traits.age > 3`, false, "no such overload"},
		{`traits.n == 30 && traits.n > 29.5`, true, ""},
		{`consent["marketing"] == "granted"`, false, "no such key"},
		{`"marketing" in consent && consent["marketing"] == "granted"`, false, ""},
	} {
		got, err := mustCompile(t, c.cond).Eval(in)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: error %v, want %q", c.cond, err, c.wantErr)
		}
		if got != c.want {
			t.Errorf("%s = %v, want %v", c.cond, got, c.want)
		}
	}
	// An empty Input (nil maps and slices) evaluates without a panic.
	for _, cond := range []string{viewsRule, lapsedRule, campinasRule, formRule, `size(identifiers) == 0 && size(consent) == 0`} {
		_, _ = mustCompile(t, cond).Eval(&Input{Now: base})
	}
	if ok, err := mustCompile(t, `size(identifiers) == 0 && size(tags) == 0 && first_seen == timestamp(0)`).Eval(&Input{Now: base}); !ok || err != nil {
		t.Fatalf("empty input: %v %v", ok, err)
	}
}

func TestConsentExpiry(t *testing.T) {
	p := profile(nil, nil, nil, false)
	exp := base.Add(time.Hour)
	p.Consent = map[string]schemas.ConsentState{
		"marketing": {Status: schemas.ConsentGranted, ExpiresAt: exp.Format(time.RFC3339Nano)},
		"analytics": {Status: schemas.ConsentDenied},
	}
	prg := mustCompile(t, `consent["marketing"] == "granted" && consent["analytics"] == "denied"`)
	for _, c := range []struct {
		now  time.Time
		want bool
	}{{base, true}, {exp.Add(-time.Millisecond), true}, {exp, false}} {
		got, err := prg.Eval(FromProfile(p, nil, c.now))
		if err != nil || got != c.want {
			t.Errorf("at %s: %v %v, want %v", c.now, got, err, c.want)
		}
	}
	if got := FromProfile(p, nil, exp).Consent["marketing"]; got != schemas.ConsentExpired {
		t.Errorf("consent at expiry = %q, want expired", got)
	}
}

func TestExplain(t *testing.T) {
	p := mustCompile(t, `traits.city == "Campinas" && "email" in channels && events("page.viewed", duration("168h")) >= 1 && counters["x"] == 0 && traits.vip == true`)
	in := FromProfile(profile(map[string]string{"city": `"Campinas"`}, map[string][]string{"email": {"a@b.c"}}, nil, false),
		map[string][]time.Time{"page.viewed": {base.Add(-time.Hour)}}, base)
	ok, reads, err := p.Explain(in)
	if err == nil || ok {
		t.Fatalf("Explain = %v, %v; want the missing trait's error", ok, err)
	}
	got, _ := json.Marshal(reads)
	want := `[{"expr":"traits.city","value":"Campinas"},{"expr":"channels","value":["email"]},` +
		`{"expr":"events(\"page.viewed\", duration(\"168h\"))","value":1},{"expr":"counters[\"x\"]","value":0},{"expr":"traits.vip","error":"no such key: vip"}]`
	if string(got) != want {
		t.Fatalf("reads = %s\nwant    %s", got, want)
	}
	ok, reads, err = mustCompile(t, lapsedRule).Explain(FromProfile(profile(nil, nil, nil, false), nil, base))
	got, _ = json.Marshal(reads)
	if !ok || err != nil || string(got) != `[{"expr":"last(\"purchase.completed\")","value":"1970-01-01T00:00:00Z"},{"expr":"now","value":"2025-06-01T12:00:00Z"}]` {
		t.Fatalf("Explain lapsed = %v %v %s", ok, err, got)
	}
}

func TestConcurrentEval(t *testing.T) {
	p := mustCompile(t, viewsRule)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				n := (g + i) % 5
				var ts []time.Time
				for j := 0; j < n; j++ {
					ts = append(ts, base.Add(-time.Duration(j)*time.Hour))
				}
				got, err := p.Eval(&Input{Times: map[string][]time.Time{"page.viewed": ts}, Now: base})
				if err != nil || got != (n >= 3) {
					t.Errorf("goroutine %d: %d views: %v %v", g, n, got, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestWindowBoundary(t *testing.T) {
	// events(T, W) counts t > now - W: t leaves at exactly t + W.
	at := base.Add(123 * time.Millisecond)
	p := mustCompile(t, `events("a", duration("1500ms")) == 1`)
	in := &Input{Times: map[string][]time.Time{"a": {at}}}
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{at, true}, {at.Add(1499 * time.Millisecond), true}, {at.Add(1500 * time.Millisecond), false},
		{at.Add(-time.Millisecond), true}, // an event time after now counts
	} {
		in.Now = c.now
		if got, err := p.Eval(in); err != nil || got != c.want {
			t.Errorf("now = at%+v: %v %v, want %v", c.now.Sub(at), got, err, c.want)
		}
	}
	in.Now = at
	if nc, ok := p.NextChange(in); !ok || !nc.Equal(at.Add(1500*time.Millisecond)) {
		t.Errorf("NextChange = %s %v, want at+1.5s", nc, ok)
	}
}

// genCond is a random condition of the supported time shapes.
func genCond(r *rand.Rand, depth int) string {
	if depth > 0 && r.Intn(3) > 0 {
		a, b := genCond(r, depth-1), genCond(r, depth-1)
		switch r.Intn(3) {
		case 0:
			return "(" + a + " && " + b + ")"
		case 1:
			return "(" + a + " || " + b + ")"
		default:
			return "!(" + a + ")"
		}
	}
	typ := []string{`"a"`, `"b"`}[r.Intn(2)]
	dur := func() string {
		return fmt.Sprintf(`duration("%s")`, []string{"1ms", "250ms", "1s", "1500ms", "90s", "10m", "1h"}[r.Intn(7)])
	}
	op := []string{"<", "<=", ">", ">=", "==", "!="}[r.Intn(6)]
	timeOf := func() string { return []string{"last(" + typ + ")", "first_seen", "last_seen"}[r.Intn(3)] }
	switch r.Intn(8) {
	case 0, 1:
		return fmt.Sprintf("events(%s, %s) %s %d", typ, dur(), op, r.Intn(5))
	case 2:
		return fmt.Sprintf("%s %s now - %s", timeOf(), op, dur())
	case 3:
		return fmt.Sprintf("now - %s %s %s", timeOf(), op, dur())
	case 4:
		return fmt.Sprintf("%s + %s %s now + %s", timeOf(), dur(), op, dur())
	case 5:
		return fmt.Sprintf("(now - %s) - (%s - now) %s %s", timeOf(), timeOf(), op, dur())
	case 6:
		lit := base.Add(time.Duration(r.Intn(7200000)) * time.Millisecond).Format(time.RFC3339Nano)
		return fmt.Sprintf(`now %s timestamp("%s") - %s`, op, lit, dur())
	default:
		return fmt.Sprintf(`%d %s events(%s, %s)`, r.Intn(4), op, typ, dur())
	}
}

func genInput(r *rand.Rand) *Input {
	in := &Input{Times: map[string][]time.Time{}, Now: base}
	var all []time.Time
	for _, typ := range []string{"a", "b"} {
		n := r.Intn(6)
		var ts []time.Time
		for i := 0; i < n; i++ {
			// Mostly near now, some a little in the future.
			ts = append(ts, base.Add(time.Duration(r.Intn(2*3600000)-3600000)*time.Millisecond))
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].After(ts[j]) })
		in.Times[typ] = ts
		all = append(all, ts...)
	}
	in.FirstSeen, in.LastSeen = epoch, epoch
	if len(all) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
		in.FirstSeen, in.LastSeen = all[0], all[len(all)-1]
	}
	return in
}

// TestNextChange: for random conditions and inputs, the result at any
// millisecond between now and NextChange is the result at now; then
// from NextChange on, again, until no change is foreseen.
func TestNextChange(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	runs, changes := 300, 0
	if testing.Short() {
		runs = 60
	}
	for run := 0; run < runs; run++ {
		cond := genCond(r, 2)
		p := mustCompile(t, cond)
		in := genInput(r)
		at := func(now time.Time) bool {
			c := *in
			c.Now = now
			v, err := p.Eval(&c)
			if err != nil {
				t.Fatalf("%s at %s: %v", cond, now, err)
			}
			return v
		}
		cur := base
		for step := 0; step < 200; step++ {
			c := *in
			c.Now = cur
			v := at(cur)
			nc, ok := p.NextChange(&c)
			end := nc
			if !ok {
				end = cur.Add(4 * time.Hour)
			} else if !nc.After(cur) {
				t.Fatalf("%s: NextChange at %s = %s, not after now", cond, cur, nc)
			}
			checks := []time.Time{end.Add(-time.Millisecond)}
			if span := end.Sub(cur).Milliseconds(); span > 1 {
				for i := 0; i < 10; i++ {
					checks = append(checks, cur.Add(time.Duration(1+r.Int63n(span-1))*time.Millisecond))
				}
			}
			for _, x := range checks {
				if x.After(cur) && at(x) != v {
					t.Fatalf("%s\ninput %+v\nresult %v at %s but %v at %s, before NextChange %s (%v)", cond, in.Times, v, cur, !v, x, nc, ok)
				}
			}
			if !ok {
				break
			}
			if at(nc) != v {
				changes++
			}
			cur = nc
		}
	}
	if changes < runs/4 {
		t.Fatalf("only %d changes over %d runs: the property test does not exercise time", changes, runs)
	}
}

func TestTraitDecoding(t *testing.T) {
	for raw, want := range map[string]any{
		`"Campinas"`: "Campinas", `"a\"b"`: `a"b`, `"S\u00e3o"`: "São", `30`: int64(30), `-2`: int64(-2), `2.5`: 2.5,
		`1e3`: 1000.0, `true`: true, `null`: nil, `[1, "x"]`: []any{int64(1), "x"}, `{"n": 1}`: map[string]any{"n": int64(1)},
	} {
		got, ok := decodeJSON(json.RawMessage(raw))
		if !ok || fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			t.Errorf("decode %s = %#v, want %#v", raw, got, want)
		}
	}
}

func TestTooLong(t *testing.T) {
	_, err := Compile(strings.Repeat("true && ", MaxConditionLength/8) + "true")
	var re *Error
	if !errors.As(err, &re) || re.Reason != ReasonSyntax || !strings.Contains(re.Message, "size") {
		t.Fatalf("a condition over %d characters: %v", MaxConditionLength, err)
	}
}
