package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

// Output formats of -o/--output.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputFormat validates -o. A command marked annotOwnOutput reads -o
// itself; for it this returns table.
func outputFormat(cmd *cobra.Command) (string, error) {
	if cmd.Annotations[annotOwnOutput] != "" {
		return formatTable, nil
	}
	f, _ := cmd.Root().PersistentFlags().GetString("output")
	switch f = strings.ToLower(f); f {
	case formatTable, formatJSON, formatYAML:
		return f, nil
	}
	return "", usagef("--output: unknown format %q (valid: table, json, yaml)", f)
}

// printOutput writes v to the command's stdout in the -o format. v is a view
// struct (views.go) or any value encoding/json handles; a proto message is
// rendered by protoView. table renders the default human form into a
// tabwriter that printOutput flushes.
func printOutput(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	switch format {
	case formatTable:
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	case formatJSON:
		b, err := toJSON(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	default:
		b, err := toJSON(v)
		if err != nil {
			return err
		}
		y, err := jsonToYAML(b)
		if err != nil {
			return err
		}
		_, err = out.Write(y)
		return err
	}
}

// toJSON renders v as indented JSON. Commands pass their view structs
// (views.go); a proto message or a slice of them is rendered by protoView's
// rules, never by protojson, whose int64-as-string and SERVICE_PRESENCE
// forms scripts cannot use as they are.
func toJSON(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		v = protoView(m)
	} else if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Implements(reflect.TypeFor[proto.Message]()) {
		items := make([]any, rv.Len())
		for i := range items {
			items[i] = protoView(rv.Index(i).Interface().(proto.Message))
		}
		v = items
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" in a reason phrase stays readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("format json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonToYAML re-encodes JSON as block-style YAML, keeping key order. JSON is
// YAML, so the parser reads it; only the flow/quoted styles are reset.
func jsonToYAML(j []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("format yaml: %w", err)
	}
	resetStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("format yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("format yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// resetStyle clears styles so the encoder picks block style and quotes a
// string only where it would otherwise read as another type.
func resetStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		resetStyle(c)
	}
}

// row writes one tab-separated table row.
func row(w io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}

// orDash shows empty cells as "-" so columns stay aligned for awk.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// joinOrDash joins a list with commas, "-" when empty.
func joinOrDash(ss []string) string {
	return orDash(strings.Join(ss, ","))
}
