package csvin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rolodex/rolodex/intake"
)

func TestParseMapping(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    *Mapping
		wantErr string // substring; "" means no error
	}{
		{
			name: "every target",
			spec: " id = ID , type=Kind,time=When,source=Src,email=Email,Phone=Tel,external:crm=CRM Id,traits.name=Full name,properties.city=City",
			want: &Mapping{
				ID: "ID", Type: "Kind", Time: "When", Source: "Src",
				Identifiers: []Field{{"email", "Email"}, {"phone", "Tel"}, {"external:crm", "CRM Id"}},
				Traits:      []Field{{"name", "Full name"}},
				Properties:  []Field{{"city", "City"}},
			},
		},
		{
			name: "one type from two columns, trailing comma",
			spec: "email=Work email,email=Home email,",
			want: &Mapping{Identifiers: []Field{{"email", "Work email"}, {"email", "Home email"}}},
		},
		{
			name: "column containing '='",
			spec: "user_id=a=b",
			want: &Mapping{Identifiers: []Field{{"user_id", "a=b"}}},
		},
		{
			name: "trait name keeps its case",
			spec: "anonymous_id=Device,Traits.FirstName=First",
			want: &Mapping{Identifiers: []Field{{"anonymous_id", "Device"}}, Traits: []Field{{"FirstName", "First"}}},
		},
		{name: "empty", spec: "  ", wantErr: "mapping is empty"},
		{name: "no equals", spec: "email", wantErr: `"email" is not target=Column`},
		{name: "no target", spec: "=Email", wantErr: "has no target"},
		{name: "no column", spec: "email=", wantErr: "has no column"},
		{name: "unknown target", spec: "email=Email,mail=Mail", wantErr: `unknown target "mail"`},
		{name: "bad external name", spec: "external:=X", wantErr: `unknown target "external:"`},
		{name: "no identifier", spec: "id=ID,traits.name=Name", wantErr: "no identifier column"},
		{name: "id twice", spec: "email=E,id=A,ID=B", wantErr: `target "ID" is mapped twice`},
		{name: "trait twice", spec: "email=E,traits.n=A,traits.n=B", wantErr: "mapped twice"},
		{name: "same identifier pair twice", spec: "email=E,EMAIL=E", wantErr: "mapped twice"},
		{name: "trait without name", spec: "email=E,traits.=A", wantErr: "a trait needs a name"},
		{name: "property without name", spec: "email=E,properties. =A", wantErr: "a property needs a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMapping(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMapping(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMapping(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseMapping(%q) =\n %+v\nwant\n %+v", tt.spec, got, tt.want)
			}
			again, err := ParseMapping(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("String() %q does not parse back: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestBind(t *testing.T) {
	header := []string{"Email", " Phone ", "name", "Dup", "Dup", "dup2", "DUP2"}
	tests := []struct {
		name    string
		spec    string
		wantErr string
		check   func(t *testing.T, b *binding)
	}{
		{
			name: "exact and trimmed",
			spec: "email=Email,phone=Phone",
			check: func(t *testing.T, b *binding) {
				if b.ids[0].index != 0 || b.ids[1].index != 1 || b.id != -1 || b.width != len(header) {
					t.Fatalf("binding %+v", b)
				}
			},
		},
		{
			name: "case-insensitive fallback",
			spec: "email=EMAIL,traits.name=Name",
			check: func(t *testing.T, b *binding) {
				if b.ids[0].index != 0 || b.traits[0].index != 2 {
					t.Fatalf("binding %+v", b)
				}
			},
		},
		{name: "missing column", spec: "email=E-mail,phone=Phone", wantErr: `column "E-mail" (for email) is not in the header`},
		{name: "two missing", spec: "email=X,traits.a=Y", wantErr: `"X" (for email)`},
		{name: "duplicate column", spec: "email=Dup", wantErr: `"Dup" (for email) appears 2 times`},
		{name: "ambiguous case-insensitive", spec: "email=Dup2", wantErr: "appears 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMapping(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			b, err := m.bind(header)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("bind error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), `the header has "Email"`) {
					t.Fatalf("bind error %q does not list the header", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, b)
		})
	}
}

func TestConvert(t *testing.T) {
	header := []string{"ID", "Kind", "When", "Email", "Email2", "Phone", "Name", "City"}
	full := "id=ID,type=Kind,time=When,email=Email,email=Email2,phone=Phone,traits.name=Name,properties.city=City"
	noID := "email=Email,phone=Phone,traits.name=Name"
	tests := []struct {
		name       string
		spec       string
		row        []string
		wantID     string // "" to skip; "csv:" checks the deterministic form
		wantType   string
		wantTime   string
		wantIDs    map[string][]string
		wantTraits map[string]string
		wantProps  map[string]string
		wantReject string
	}{
		{
			name:       "every field",
			spec:       full,
			row:        []string{"e-1", "lead.created", "2026-01-02T03:04:05Z", "A@X.com", "b@x.com", "11 99876-5432", ` Ana "A" <ana> `, "São Paulo"},
			wantID:     "e-1",
			wantType:   "lead.created",
			wantTime:   "2026-01-02T03:04:05Z",
			wantIDs:    map[string][]string{"email": {"A@X.com", "b@x.com"}, "phone": {"11 99876-5432"}},
			wantTraits: map[string]string{"name": `"Ana \"A\" <ana>"`},
			wantProps:  map[string]string{"city": `"São Paulo"`},
		},
		{
			name:     "empty cells omitted, empty type falls back",
			spec:     full,
			row:      []string{"e-2", " ", "", "", "b@x.com", "  ", "", ""},
			wantID:   "e-2",
			wantType: "contact.imported",
			wantIDs:  map[string][]string{"email": {"b@x.com"}},
		},
		{
			name:     "deterministic id",
			spec:     noID,
			row:      []string{"", "", "", "a@x.com", "", "", "Ana", ""},
			wantID:   "csv:",
			wantType: "contact.imported",
			wantIDs:  map[string][]string{"email": {"a@x.com"}},
			wantTraits: map[string]string{
				"name": `"Ana"`,
			},
		},
		{
			name:       "no identifier",
			spec:       noID,
			row:        []string{"x", "", "", " ", "z@x.com", "", "Ana", ""},
			wantReject: intake.ReasonNoIdentifiers,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, rej := testConverter(t, tt.spec, header).convert(tt.row)
			if tt.wantReject != "" {
				if rej == nil || rej.Reason != tt.wantReject {
					t.Fatalf("convert = %+v, %v; want rejection %s", raw, rej, tt.wantReject)
				}
				if !strings.Contains(rej.Message, "Email, Phone") {
					t.Fatalf("message %q does not name the identifier columns", rej.Message)
				}
				return
			}
			if rej != nil {
				t.Fatalf("convert rejected: %v", rej)
			}
			switch {
			case tt.wantID == "csv:":
				if !strings.HasPrefix(raw.ID, "csv:") || len(raw.ID) != 4+32 {
					t.Fatalf("id %q is not csv:<32 hex digits>", raw.ID)
				}
			case raw.ID != tt.wantID:
				t.Fatalf("id = %q, want %q", raw.ID, tt.wantID)
			}
			if raw.Type != tt.wantType || raw.Time != tt.wantTime {
				t.Fatalf("type, time = %q, %q; want %q, %q", raw.Type, raw.Time, tt.wantType, tt.wantTime)
			}
			if !reflect.DeepEqual(raw.Identifiers, tt.wantIDs) {
				t.Fatalf("identifiers = %v, want %v", raw.Identifiers, tt.wantIDs)
			}
			checkJSONMap(t, "traits", raw.Traits, tt.wantTraits)
			checkJSONMap(t, "properties", raw.Properties, tt.wantProps)
		})
	}
}

// testConverter converts rows of a file with header, mapped by spec.
func testConverter(t *testing.T, spec string, header []string) *converter {
	t.Helper()
	m, err := ParseMapping(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.bind(header)
	if err != nil {
		t.Fatal(err)
	}
	return newConverter(b, DefaultEventType, "demo", "contacts.csv")
}

// A mapped cell that is not valid UTF-8 rejects its row, naming the column
// and the byte; the same bytes in a column not mapped change nothing.
func TestConvertRejectsInvalidUTF8(t *testing.T) {
	header := []string{"ID", "Kind", "When", "Src", "Email", "Phone", "Name", "City", "Note"}
	c := testConverter(t, "id=ID,type=Kind,time=When,source=Src,email=Email,phone=Phone,traits.name=Name,properties.city=City", header)
	row := func() []string {
		return []string{"e-1", "t", "2026-01-02T03:04:05Z", "web", "a@x.com", "11 99876-5432", "Ana", "Rio", "ok"}
	}
	for i, column := range header {
		bad := row()
		bad[i] = "ab\xff\xfe"
		raw, rej := c.convert(bad)
		if column == "Note" {
			if rej != nil {
				t.Errorf("%s is not mapped, but rejected the row: %v", column, rej)
			}
			continue
		}
		want := fmt.Sprintf("invalid UTF-8 at byte 2 of column %q", column)
		if rej == nil || rej.Reason != intake.ReasonInvalidUTF8 || rej.Message != want {
			t.Errorf("%s: convert = %+v, %v; want %s: %s", column, raw, rej, intake.ReasonInvalidUTF8, want)
		}
	}
}

func checkJSONMap(t *testing.T, what string, got map[string]json.RawMessage, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Fatalf("%s[%s] = %s, want %s", what, k, got[k], v)
		}
		var s string
		if err := json.Unmarshal(got[k], &s); err != nil {
			t.Fatalf("%s[%s] = %s is not a JSON string: %v", what, k, got[k], err)
		}
	}
}

func TestRowID(t *testing.T) {
	m, err := ParseMapping("email=E")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.bind([]string{"E", "N"})
	if err != nil {
		t.Fatal(err)
	}
	id := func(partner, file string, row ...string) string {
		return newConverter(b, DefaultEventType, partner, file).rowID(row)
	}
	base := id("demo", "a.csv", "x@y.com", "Ana")
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{"same inputs", id("demo", "a.csv", "x@y.com", "Ana"), true},
		{"other partner", id("acme", "a.csv", "x@y.com", "Ana"), false},
		{"other file", id("demo", "b.csv", "x@y.com", "Ana"), false},
		{"other field", id("demo", "a.csv", "x@y.com", "Bia"), false},
		{"fields shifted", id("demo", "a.csv", "x@y.comAna", ""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.got == base) != tt.same {
				t.Fatalf("id %q vs %q: same = %v, want %v", tt.got, base, tt.got == base, tt.same)
			}
		})
	}
	// A reused converter gives the same id as a fresh one.
	c := newConverter(b, DefaultEventType, "demo", "a.csv")
	c.rowID([]string{"other", "row"})
	if got := c.rowID([]string{"x@y.com", "Ana"}); got != base {
		t.Fatalf("reused converter: %q, want %q", got, base)
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []string{"", "plain", `q"uo\te`, "tab\tnl\nre\r", "\x00\x1f\x7f", "<a&b>", "ünï €", "bad\xffutf8"}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			out := appendJSONString(nil, in)
			var got string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%q -> %s: not JSON: %v", in, out, err)
			}
			want := strings.ToValidUTF8(in, "\uFFFD")
			if got != want {
				t.Fatalf("%q -> %s decodes to %q", in, out, got)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	m, err := ParseMapping("email=E")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{File: "a.csv", Mapping: m}},
		{name: "no file", cfg: Config{Mapping: m}, wantErr: "no file"},
		{name: "no mapping", cfg: Config{File: "a.csv"}, wantErr: "no mapping"},
		{name: "rejects is input", cfg: Config{File: "a.csv", Rejects: "a.csv", Mapping: m}, wantErr: "must not be the input"},
		{name: "bad delimiter", cfg: Config{File: "a.csv", Mapping: m, Comma: '"'}, wantErr: "delimiter"},
		{name: "bad type", cfg: Config{File: "a.csv", Mapping: m, DefaultType: "contact imported"}, wantErr: "default type"},
		{name: "negative in-flight", cfg: Config{File: "a.csv", Mapping: m, MaxInFlight: -1}, wantErr: "MaxInFlight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Rejects != "a.csv.rejects.csv" || cfg.DefaultType != DefaultEventType || cfg.Comma != ',' {
					t.Fatalf("defaults not set: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
