// Command promql-metrics prints the metric names PromQL expressions use, so
// that a test can check every name of the alert rules and the dashboard
// against what the programs serve. It reads a JSON array of expressions on
// standard input and writes a JSON array with, for each, the names its
// selectors ask for (sorted, each once); a selector that names no metric
// (only other labels, or a regular expression on __name__) is an error, as
// its metrics cannot be checked. It exits 1 when an expression does not
// parse, naming it.
//
//	echo '["rate(redis_commands_processed_total[5m])"]' | promql-metrics
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Result is what one expression uses.
type Result struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

func main() { os.Exit(run(os.Stdin, os.Stdout, os.Stderr)) }

func run(in io.Reader, out, errOut io.Writer) int {
	var exprs []string
	if err := json.NewDecoder(in).Decode(&exprs); err != nil {
		fmt.Fprintf(errOut, "promql-metrics: standard input is not a JSON array of strings: %v\n", err)
		return 2
	}
	p := parser.NewParser(parser.Options{})
	results := make([]Result, 0, len(exprs))
	status := 0
	for _, e := range exprs {
		names, err := metrics(p, e)
		if err != nil {
			fmt.Fprintf(errOut, "promql-metrics: %q: %v\n", e, err)
			status = 1
			continue
		}
		results = append(results, Result{Expr: e, Metrics: names})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		fmt.Fprintf(errOut, "promql-metrics: %v\n", err)
		return 1
	}
	return status
}

// metrics returns the metric names the selectors of expr name.
func metrics(p parser.Parser, expr string) ([]string, error) {
	ast, err := p.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					bad = fmt.Errorf("selector %s matches metric names by pattern", vs)
				}
				name = m.Value
			}
		}
		if name == "" {
			bad = fmt.Errorf("selector %s names no metric", vs)
		}
		names = append(names, name)
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
