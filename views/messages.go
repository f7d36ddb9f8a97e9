package views

// The message API (docs/lifecycle.md, docs/api.md "Messages"):
// GET /v1/messages/{id} answers a message's state, channel, recipient,
// bounce, history and standing refusals from a goka view of the
// lifecycle group's table (schemas.MessageTable, keyed by
// schemas.MessageKey: the tenant is part of the key, so another tenant's
// message is never read).

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode"

	"github.com/lovoo/goka"

	"github.com/rolodex/rolodex/schemas"
)

// Messages reads the lifecycle's table by message key.
type Messages interface {
	Message(key string) (*schemas.MessageTable, error)
	Ready() bool
}

// MessageView is a goka view of the lifecycle group's table.
type MessageView struct {
	*tableView[schemas.MessageTable]
}

// NewMessageView opens a view of the lifecycle's table; storageDir keeps
// its local copy.
func NewMessageView(brokers []string, storageDir string, opts ...goka.ViewOption) (*MessageView, error) {
	tv, err := newTableView[schemas.MessageTable](brokers, goka.GroupTable(schemas.GroupLifecycle), storageDir, "rolodex-views-messages", "message view", opts...)
	if err != nil {
		return nil, err
	}
	return &MessageView{tv}, nil
}

// Message returns the lifecycle's state of message key, nil if none.
func (v *MessageView) Message(key string) (*schemas.MessageTable, error) { return v.get(key) }

// Message is the answer of GET /v1/messages/{id}.
type Message struct {
	ID string `json:"id"`
	// State is the message's state; "none" when no event moved it (every
	// one of its events was refused).
	State   string `json:"state"`
	Channel string `json:"channel"`
	// Bounce of the latest bounce folded: hard or soft.
	Bounce    string            `json:"bounce,omitempty"`
	Recipient *MessageRecipient `json:"recipient,omitempty"`
	// EventCount is how many distinct events the message keeps.
	EventCount int `json:"event_count"`
	// History: one step per event and per implied or automatic state.
	History []MessageStep `json:"history"`
	// Refusals standing: the message's events that were refused, by event
	// id (their dead letters are in rolodex.deadletter).
	Refusals []MessageRefusal `json:"refusals"`
}

// MessageRecipient is who the message was for: the identifiers of its
// latest event, the address of its channel among them, and the profile
// holding that address when the profile view knows it.
type MessageRecipient struct {
	Address     *schemas.Identifier  `json:"address,omitempty"`
	ProfileID   string               `json:"profile_id,omitempty"`
	Identifiers []schemas.Identifier `json:"identifiers"`
}

// MessageStep is one step of a message's history.
type MessageStep struct {
	State  string `json:"state"`
	Time   string `json:"time"`
	TimeMs int64  `json:"time_ms"`
	Event  string `json:"event"`
	How    string `json:"how"`
	From   string `json:"from,omitempty"`
	Reason string `json:"reason,omitempty"`
	Bounce string `json:"bounce,omitempty"`
}

// MessageRefusal is a standing refusal of one of the message's events.
type MessageRefusal struct {
	Event  string `json:"event"`
	From   string `json:"from"`
	Asked  string `json:"asked"`
	Reason string `json:"reason"`
}

// validMessageID is what ingest accepts as properties.message_id.
func validMessageID(id string) bool {
	return id != "" && len(id) <= schemas.MessageIDMaxLen && strings.TrimSpace(id) == id && !strings.ContainsFunc(id, unicode.IsControl)
}

func (a *API) getMessage(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.tenant(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validMessageID(id) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad_request",
			Message: fmt.Sprintf("a message id is the properties.message_id of its events: 1 to %d bytes, no white space around it, no control character", schemas.MessageIDMaxLen)})
		return
	}
	if !a.cfg.Messages.Ready() {
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "not_ready", Message: "the message view is still loading; retry shortly"})
		return
	}
	st, err := a.cfg.Messages.Message(schemas.MessageKey(tenant, id))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		return
	}
	if st == nil || st.Tenant != tenant || len(st.Events) == 0 {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not_found", Message: "no message " + id + " in this tenant"})
		return
	}
	m, err := a.messageOf(tenant, st)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "internal", Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// messageOf is the answer for the table value st of tenant.
func (a *API) messageOf(tenant string, st *schemas.MessageTable) (*Message, error) {
	m := &Message{ID: st.MessageID, State: string(st.State), Channel: st.Channel, Bounce: st.Bounce,
		EventCount: len(st.Events), History: []MessageStep{}, Refusals: []MessageRefusal{}}
	if m.State == "" {
		m.State = "none"
	}
	if m.Channel == "" {
		m.Channel = schemas.ChannelEmail
	}
	for _, h := range st.History {
		m.History = append(m.History, MessageStep{State: string(h.State), Time: formatMs(h.Time), TimeMs: h.Time,
			Event: h.Event, How: h.How, From: string(h.From), Reason: h.Reason, Bounce: h.Bounce})
	}
	for _, ev := range schemas.SortedKeys(st.Refused) {
		rf := st.Refused[ev]
		from := string(rf.From)
		if from == "" {
			from = "none"
		}
		m.Refusals = append(m.Refusals, MessageRefusal{Event: ev, From: from, Asked: string(rf.Asked), Reason: rf.Reason})
	}
	if len(st.Recipient) == 0 {
		return m, nil
	}
	rc := &MessageRecipient{Identifiers: append([]schemas.Identifier(nil), st.Recipient...)}
	sort.SliceStable(rc.Identifiers, func(i, j int) bool { return rc.Identifiers[i].String() < rc.Identifiers[j].String() })
	m.Recipient = rc
	typ, _ := schemas.AddressType(m.Channel)
	for i := range st.Recipient {
		if st.Recipient[i].Type == typ {
			addr := st.Recipient[i]
			rc.Address = &addr
			break
		}
	}
	// The profile of the address, or of the first identifier.
	of := rc.Address
	if of == nil {
		of = &st.Recipient[0]
	}
	p, err := Resolve(a.nodes, tenant, schemas.NodeID(tenant, *of))
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotReady):
	case err != nil:
		return nil, err
	default:
		rc.ProfileID = p.ID
	}
	return m, nil
}
