package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rwagent/rwagent/pkg/scrape"
)

// shardArgs are the --shard.* flags as given; "" is not given.
type shardArgs struct {
	count, index, replication string
}

// The environment variables a flag not given falls back to, so that a
// StatefulSet's env can carry the count through a rolling restart.
const (
	envShardCount       = "RWAGENT_SHARD_COUNT"
	envShardIndex       = "RWAGENT_SHARD_INDEX"
	envShardReplication = "RWAGENT_SHARD_REPLICATION"
)

// resolveShard decides this agent's shard: each field from its flag, else
// its environment variable. When the count is above 1 and neither gives
// the index, it is the ordinal ending the pod name, $POD_NAME else
// $HOSTNAME ("rwagent-2" is shard 2), as a StatefulSet names its pods.
// from says where the index came from, for the start log. A value that is
// not a number, or a count without an index to be found, is an error
// naming the flag and the variable.
func resolveShard(a shardArgs, getenv func(string) string) (s scrape.Shard, from string, err error) {
	pick := func(flagName, flagVal, env string) (int, string, error) {
		src, v := "--"+flagName, flagVal
		if v == "" {
			src, v = env, getenv(env)
		}
		if v == "" {
			return 0, "", nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, "", fmt.Errorf("%s: %q is not a whole number", src, v)
		}
		return n, src, nil
	}
	if s.Count, _, err = pick("shard.count", a.count, envShardCount); err != nil {
		return s, "", err
	}
	if s.Replication, _, err = pick("shard.replication", a.replication, envShardReplication); err != nil {
		return s, "", err
	}
	if s.Index, from, err = pick("shard.index", a.index, envShardIndex); err != nil {
		return s, "", err
	}
	if from == "" && s.Count > 1 {
		s.Index, from, err = podOrdinal(getenv)
		if err != nil {
			return s, "", err
		}
	}
	if err := s.Validate(); err != nil {
		if from != "" && !strings.HasPrefix(from, "--") {
			err = fmt.Errorf("%w (index from %s)", err, from)
		}
		return s, "", err
	}
	return s, from, nil
}

// podOrdinal reads the ordinal that ends a StatefulSet pod's name from
// $POD_NAME, else $HOSTNAME.
func podOrdinal(getenv func(string) string) (int, string, error) {
	for _, env := range []string{"POD_NAME", "HOSTNAME"} {
		name := getenv(env)
		if name == "" {
			continue
		}
		i := strings.LastIndexByte(name, '-')
		digits := name[i+1:]
		n, err := strconv.Atoi(digits)
		if i < 0 || err != nil || strings.TrimLeft(digits, "0123456789") != "" {
			return 0, "", fmt.Errorf("--shard.index: not given (nor %s), and %s=%q does not end in a pod ordinal like rwagent-2", envShardIndex, env, name)
		}
		return n, fmt.Sprintf("%s=%s", env, name), nil
	}
	return 0, "", fmt.Errorf("--shard.index: not given, nor %s, POD_NAME or HOSTNAME to take a pod ordinal from", envShardIndex)
}
