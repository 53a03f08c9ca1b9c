package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/store/bolt"
)

// TestBrokerRegistersCreationRecord: the broker, with this package's
// validator, registers a volume from the creation record first boot stored,
// and refuses a record of another volume; a verifier without creation
// record support answers 501.
func TestBrokerRegistersCreationRecord(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t, "volume key for the broker test, 64 bytes long .................")
	rec, err := g.iss.IssueCreation(ctx, g.keyID, testUUID, "state")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	post := func(v broker.Verifier, uuid, keyID string) *http.Response {
		t.Helper()
		st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		srv, err := broker.New(broker.Config{Store: st, Verifier: v, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		defer hs.Close()
		body, _ := json.Marshal(map[string]any{"creation_record": json.RawMessage(raw), "volume": map[string]string{"uuid": uuid, "key_id": keyID}})
		resp, err := http.Post(hs.URL+"/v1/volumes", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	val := validator(t, g.policy(t), ValidatorOptions{})
	if r := post(val, testUUID, g.keyID); r.StatusCode != http.StatusCreated {
		t.Errorf("register from the creation record: %s, want 201", r.Status)
	}
	if r := post(val, "11111111-2222-3333-4444-555555555555", g.keyID); r.StatusCode != http.StatusForbidden {
		t.Errorf("record presented for another volume: %s, want 403", r.Status)
	}
	if r := post(&brokertest.Verifier{}, testUUID, g.keyID); r.StatusCode != http.StatusNotImplemented {
		t.Errorf("verifier without creation records: %s, want 501", r.Status)
	}
}
