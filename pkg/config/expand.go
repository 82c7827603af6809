package config

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var numberOrBool = regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?|true|false)$`)

// expandEnv replaces ${NAME} in every scalar value below n with the
// variable's value, ${NAME:-default} with default when NAME is unset or
// empty, and ${NAME-default} with default when it is unset. NAME starts with a letter or underscore, so relabel
// references such as $1 and ${1} are left alone; $${NAME} stands for a
// literal ${NAME}. An unset variable is an error naming it (never its
// value, which may be a secret). Keys are not expanded.
func expandEnv(n *yaml.Node, getenv func(string) (string, bool), path string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return nil
		}
		v, err := expand(n.Value, getenv)
		if err != nil {
			return &Error{Line: n.Line, Field: path, Msg: err.Error()}
		}
		n.Value = v
		if n.Style == 0 && numberOrBool.MatchString(v) {
			// A plain ${SHARDS} that expands to 10 is an int, as if
			// written literally. Anything else stays a string, quoted
			// on re-encoding, so a value can never change the document.
			n.Tag = ""
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := expandEnv(n.Content[i+1], getenv, join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := expandEnv(c, getenv, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// expand rewrites one value. See expandEnv for the syntax.
func expand(s string, getenv func(string) (string, bool)) (string, error) {
	var sb strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			sb.WriteString(s)
			return sb.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // $${ is a literal ${
			sb.WriteString(s[:i-1])
			sb.WriteString("${")
			s = s[i+2:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		name := ""
		if end > 0 {
			name = s[i+2 : i+end]
		}
		// ${NAME:-default}: default when NAME is unset or empty;
		// ${NAME-default}: when it is unset (Grafana Agent's
		// -config.expand-env and the shell's syntax). The default is
		// taken as written, up to the first }.
		def, hasDef, emptyToo := "", false, false
		if j := strings.IndexByte(name, '-'); j > 0 {
			emptyToo = name[j-1] == ':'
			def, hasDef = name[j+1:], true
			if emptyToo {
				name = name[:j-1]
			} else {
				name = name[:j]
			}
		}
		if !isEnvName(name) {
			sb.WriteString(s[:i+2])
			s = s[i+2:]
			continue
		}
		v, ok := getenv(name)
		switch {
		case hasDef && (!ok || (emptyToo && v == "")):
			v = def
		case !ok:
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		sb.WriteString(s[:i])
		sb.WriteString(v)
		s = s[i+end+1:]
	}
}

func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}
