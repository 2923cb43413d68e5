package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeConfig decodes YAML into c, walking the document against c's yaml
// tags so every error names the key path an operator wrote ("sip.udpp:
// unknown key (line 3)") and the line, never a Go type. Unknown and
// repeated keys are errors; a key set to null keeps its default.
func decodeConfig(data []byte, c *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if doc.Kind == 0 { // empty file
		return nil
	}
	return decodeNode(&doc, reflect.ValueOf(c).Elem(), "")
}

var durationType = reflect.TypeOf(time.Duration(0))

func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return decodeNode(n.Content[0], v, path)
	}
	if n.Kind == yaml.AliasNode {
		return decodeNode(n.Alias, v, path)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil // "key:" with no value keeps the default
	}
	if v.Kind() == reflect.Struct {
		if n.Kind != yaml.MappingNode {
			return keyErr(path, n, "want a section of keys, got %s", describe(n))
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				return keyErr(kp, k, "given twice (first on line %d)", line)
			}
			seen[k.Value] = k.Line
			f, ok := fieldByTag(v, k.Value)
			if !ok {
				return keyErr(kp, k, "unknown key%s", suggest(v, k.Value))
			}
			if err := decodeNode(val, f, kp); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return keyErr(path, n, "want a single value, got %s", describe(n))
	}
	s := n.Value
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return keyErr(path, n, "%q: want a duration such as 30s, 5m, 12h or 90d", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return keyErr(path, n, "%q: want true or false", s)
		}
		v.SetBool(b)
	case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
		i, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return keyErr(path, n, "%q: want a whole number", s)
		}
		v.SetInt(i)
	case v.Kind() >= reflect.Uint && v.Kind() <= reflect.Uint64:
		u, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			return keyErr(path, n, "%q: want a whole number, not negative", s)
		}
		v.SetUint(u)
	default:
		// A Config field of a kind this decoder does not know: a bug here,
		// not the operator's.
		return fmt.Errorf("%s: hubd cannot decode this key (internal error)", path)
	}
	return nil
}

// fieldByTag finds the struct field whose yaml tag is key.
func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == key && name != "" && name != "-" {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// suggest names the keys the section does take.
func suggest(v reflect.Value, _ string) string {
	t := v.Type()
	var keys []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return " (this section takes: " + strings.Join(keys, ", ") + ")"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("the value %q", n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyErr(path string, n *yaml.Node, format string, args ...any) error {
	if path == "" {
		path = "(top level)"
	}
	return fmt.Errorf("%s: %s (line %d)", path, fmt.Sprintf(format, args...), n.Line)
}

var daysRe = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// parseDuration is time.ParseDuration plus a leading whole number of days
// ("90d", "1d12h"): retention and certificate lifetimes are planned in
// days. A day is 24 hours here (durations, not calendar dates).
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if m := daysRe.FindStringSubmatch(s); m != nil {
		days, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || days > int64(maxDuration/(24*time.Hour)) {
			return 0, fmt.Errorf("duration %q: too many days", s)
		}
		d := time.Duration(days) * 24 * time.Hour
		if m[2] == "" {
			return d, nil
		}
		rest, err := time.ParseDuration(m[2])
		if err != nil || rest < 0 || d > maxDuration-rest {
			return 0, fmt.Errorf("duration %q: bad or too long", s)
		}
		return d + rest, nil
	}
	return time.ParseDuration(s)
}

const maxDuration = time.Duration(1<<63 - 1)
