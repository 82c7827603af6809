package sendpos

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/rwagent/rwagent/pkg/wal"
)

// Resume is where one endpoint starts.
type Resume struct {
	// Key names the endpoint's position files (see Key).
	Key string
	// Start is where its queue starts reading.
	Start wal.Position
	// ResendUntil is the last run's sent high-water mark: records from
	// Start up to it may have reached the receiver already.
	ResendUntil wal.Position
	// Lost is what the WAL trimmed of what the endpoint had not sent.
	Lost *wal.GapError
}

// Keys returns the send-position key of each endpoint, in order: Key of
// its name and URL, with "-<index>" added to the second and later of
// unnamed entries sharing one URL.
func Keys(eps []Endpoint) []string {
	used := make(map[string]bool, len(eps))
	keys := make([]string, len(eps))
	for i, ep := range eps {
		key := Key(ep.Name, ep.URL.String())
		if used[key] { // two unnamed entries with one URL
			key += "-" + strconv.Itoa(i)
		}
		used[key] = true
		keys[i] = key
	}
	return keys
}

// resumePositions returns, for each endpoint in order, its send-position
// key (Keys), where to start and what may be resent (resumeOne), and
// deletes the saved positions of endpoints no longer configured, so that
// they stop holding the WAL.
func resumePositions(store *Store, w *wal.WAL, eps []Endpoint, logger *slog.Logger) []Resume {
	keys := Keys(eps)
	used := make(map[string]bool, len(eps))
	out := make([]Resume, 0, len(eps))
	for i, ep := range eps {
		used[keys[i]] = true
		out = append(out, resumeOne(store, w, keys[i], ep, logger))
	}
	stale, err := store.Keys()
	if err != nil {
		logger.Warn("list saved send positions", "err", err)
	}
	for _, k := range stale {
		if used[k] {
			continue
		}
		if err := store.Remove(k); err != nil {
			logger.Warn("remove the send position of a removed remote_write", "position_file", k, "err", err)
			continue
		}
		logger.Info("remote_write no longer configured: its send position no longer holds the WAL", "position_file", k)
	}
	return out
}

// resumeOne returns where the endpoint ep, of send-position key, starts.
// Every problem with a saved position is logged and answered with the
// safe choice: resend from the oldest data the WAL holds. When the last
// run's sent mark is unknown (no live file, or one older than the saved
// position: a power loss), everything up to where this process started
// writing the WAL counts as possibly sent.
func resumeOne(store *Store, w *wal.WAL, key string, ep Endpoint, logger *slog.Logger) Resume {
	lg := logger.With("remote_name", ep.Name, "url", ep.URL.Redacted(), "position_file", key)
	var durable, live *State
	unreadable := false
	if st, ok, err := store.Load(key); err != nil {
		lg.Warn("send position unreadable", "err", err)
		unreadable = true
	} else if ok {
		durable = &st
	}
	if st, ok, err := store.LoadLive(key); err != nil {
		lg.Warn("live send position unreadable; the saved one is used", "err", err)
		unreadable = true
	} else if ok {
		live = &st
	}
	st, ok := Latest(durable, live)
	switch {
	case !ok && unreadable:
		// Nothing says what was sent: all of it may have been.
		lg.Warn("no usable send position; sending again from the oldest data in the WAL, all of it counted as resent",
			"bytes", w.Bytes(wal.Position{}, w.Started()))
		return Resume{Key: key, ResendUntil: w.Started()}
	case !ok:
		lg.Info("no saved send position; sending from the oldest data in the WAL")
		return Resume{Key: key}
	}
	if !st.SentKnown {
		st.Sent = w.Started()
	}
	start, err := w.Resume(st.Acked)
	if errors.Is(err, wal.ErrPositionPastEnd) {
		// Not a position of this WAL: the file is as good as corrupt,
		// and so is its sent mark.
		lg.Warn("send position corrupt: it points past the end of the WAL; sending again from the oldest data in the WAL, all of it counted as resent",
			"saved", st.Acked.String(), "err", err, "bytes", w.Bytes(wal.Position{}, w.Started()))
		return Resume{Key: key, ResendUntil: w.Started()}
	}
	lost, _ := errors.AsType[*wal.GapError](err)
	switch {
	case lost != nil && lost.Full == (wal.Counts{}) && lost.TooOld == (wal.Counts{}):
		lg.Warn("repairs cut the WAL past the saved send position: what this endpoint had not sent there is counted as dropped (wal_corrupt, an upper bound); sending from the oldest data left", "saved", st.Acked.String(), "err", err)
	case lost != nil:
		lg.Warn("the WAL was trimmed past the saved send position (wal.max_size or wal.max_age): what this endpoint had not sent there is counted as dropped; sending from the oldest data left", "saved", st.Acked.String(), "err", err)
	case err != nil:
		lg.Warn("saved send position does not fit the WAL; sending again from the oldest data in it", "saved", st.Acked.String(), "err", err)
	default:
		lg.Info("resuming remote write at its saved send position", "position", start.String())
	}
	if n := w.Bytes(start, st.Sent); n > 0 {
		lg.Warn("resending bytes of WAL acknowledged-or-in-flight before the restart; their samples count in rwagent_remote_write_resent_samples_total",
			"bytes", n, "from", start.String(), "to", st.Sent.String(), "sent_mark_known", st.SentKnown)
	}
	return Resume{Key: key, Start: start, ResendUntil: st.Sent, Lost: lost}
}
