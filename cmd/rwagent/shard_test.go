package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rwagent/rwagent/pkg/scrape"
)

func TestResolveShard(t *testing.T) {
	cases := []struct {
		name    string
		args    shardArgs
		env     map[string]string
		want    scrape.Shard
		from    string
		wantErr string
	}{
		{name: "nothing", env: map[string]string{"HOSTNAME": "rwagent-2"}, want: scrape.Shard{}},
		{name: "flags", args: shardArgs{count: "3", index: "1"}, want: scrape.Shard{Count: 3, Index: 1}, from: "--shard.index"},
		{name: "env", env: map[string]string{envShardCount: "4", envShardIndex: "3", envShardReplication: "2"},
			want: scrape.Shard{Count: 4, Index: 3, Replication: 2}, from: envShardIndex},
		{name: "flag over env", args: shardArgs{count: "5"}, env: map[string]string{envShardCount: "4", envShardIndex: "4"},
			want: scrape.Shard{Count: 5, Index: 4}, from: envShardIndex},
		{name: "ordinal from HOSTNAME", args: shardArgs{count: "3"}, env: map[string]string{"HOSTNAME": "rwagent-2"},
			want: scrape.Shard{Count: 3, Index: 2}, from: "HOSTNAME=rwagent-2"},
		{name: "POD_NAME before HOSTNAME", env: map[string]string{envShardCount: "3", "POD_NAME": "agents-1", "HOSTNAME": "rwagent-2"},
			want: scrape.Shard{Count: 3, Index: 1}, from: "POD_NAME=agents-1"},
		{name: "ordinal needs a count above 1", args: shardArgs{count: "1"}, env: map[string]string{"HOSTNAME": "rwagent-2"}, want: scrape.Shard{Count: 1}},
		{name: "not a number", args: shardArgs{count: "three"}, wantErr: `--shard.count: "three" is not a whole number`},
		{name: "env not a number", env: map[string]string{envShardIndex: "x"}, wantErr: envShardIndex + `: "x" is not a whole number`},
		{name: "no ordinal in the host name", args: shardArgs{count: "3"}, env: map[string]string{"HOSTNAME": "ip-10-0-0-1.ec2"},
			wantErr: `--shard.index: not given (nor RWAGENT_SHARD_INDEX), and HOSTNAME="ip-10-0-0-1.ec2" does not end in a pod ordinal`},
		{name: "sign is no ordinal", args: shardArgs{count: "3"}, env: map[string]string{"HOSTNAME": "rwagent-+1"}, wantErr: "does not end in a pod ordinal"},
		{name: "trailing dash", args: shardArgs{count: "3"}, env: map[string]string{"HOSTNAME": "rwagent-"}, wantErr: "does not end in a pod ordinal"},
		{name: "no name at all", args: shardArgs{count: "3"}, wantErr: "--shard.index: not given, nor RWAGENT_SHARD_INDEX, POD_NAME or HOSTNAME"},
		{name: "scaled past the count", args: shardArgs{count: "3"}, env: map[string]string{"HOSTNAME": "rwagent-3"},
			wantErr: "--shard.index: 3 is not in 0..2 (--shard.count is 3) (index from HOSTNAME=rwagent-3)"},
		{name: "replication above count", args: shardArgs{count: "2", index: "0", replication: "3"}, wantErr: "--shard.replication: 3 is more than --shard.count 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, from, err := resolveShard(c.args, func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || from != c.from {
				t.Errorf("got %+v from %q, want %+v from %q", got, from, c.want, c.from)
			}
		})
	}
}

// TestCommandLine_BadShard: a shard the agent cannot take stops it before
// anything starts, with exit 2 and the flag's name.
func TestCommandLine_BadShard(t *testing.T) {
	t.Setenv(envShardCount, "")
	t.Setenv(envShardIndex, "")
	for _, c := range []struct{ args, want string }{
		{"--shard.count=3 --shard.index=3", "rwagent: --shard.index: 3 is not in 0..2"},
		{"--shard.count=x", `rwagent: --shard.count: "x" is not a whole number`},
	} {
		var out, errOut bytes.Buffer
		code := run(append(strings.Fields(c.args), "--web.listen-address=127.0.0.1:0", "--storage.path="+t.TempDir()), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}

// FuzzResolveShard: any flags and environment give a valid shard or an
// error naming a flag, never a panic.
func FuzzResolveShard(f *testing.F) {
	f.Add("3", "", "", "rwagent-2", "")
	f.Add("", "", "", "", "")
	f.Add("4", "3", "2", "", "agents-1")
	f.Add("3", "", "", "rwagent-", "")
	f.Add("3", "", "", "rwagent-+1", "")
	f.Add("-1", "x", "", "-", "-9")
	f.Fuzz(func(t *testing.T, count, index, replication, hostname, podName string) {
		env := map[string]string{"HOSTNAME": hostname, "POD_NAME": podName}
		s, _, err := resolveShard(shardArgs{count: count, index: index, replication: replication}, func(k string) string { return env[k] })
		if err != nil {
			if !strings.Contains(err.Error(), "--shard.") && !strings.Contains(err.Error(), "RWAGENT_SHARD_") {
				t.Errorf("error %q names no flag or variable", err)
			}
			return
		}
		if verr := s.Validate(); verr != nil {
			t.Errorf("resolved %+v, which is invalid: %v", s, verr)
		}
	})
}
