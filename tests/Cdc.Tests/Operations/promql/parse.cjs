// Parses PromQL expressions with Prometheus' own grammar (@prometheus-io/lezer-promql) and prints, for each, the
// syntax errors and the vector selectors: metric name and label matchers. Input: a JSON array of strings on stdin;
// output: a JSON array of {expr, errors: [offset], selectors: [{metric, matchers: [{label, op, value}]}]}.
// Run by tests/Cdc.Tests/Operations/PromQl.cs with NODE_PATH set to what .ci/install-promql-parser installed.
const { parser } = require('@prometheus-io/lezer-promql');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const results = input.map(expr => {
  const errors = [];
  const selectors = [];
  const text = node => expr.slice(node.from, node.to);
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name !== 'VectorSelector') return;
      const selector = { metric: '', matchers: [] };
      const cursor = node.node.cursor();
      const walk = n => {
        for (let child = n.firstChild; child; child = child.nextSibling) {
          if (child.name === 'Identifier' && n.name === 'VectorSelector') selector.metric = text(child);
          else if (child.name === 'UnquotedLabelMatcher' || child.name === 'QuotedLabelMatcher') {
            const label = child.getChild('LabelName') ?? child.getChild('QuotedLabelName');
            const op = child.getChild('MatchOp');
            const value = child.getChild('StringLiteral');
            selector.matchers.push({ label: label ? text(label).replace(/^"|"$/g, '') : '', op: op ? text(op) : '', value: value ? JSON.parse(text(value).replace(/^'|'$/g, '"')) : '' });
          } else if (child.name === 'QuotedLabelName' && n.name === 'LabelMatchers') {
            selector.metric = JSON.parse(text(child));
          } else walk(child);
        }
      };
      walk(cursor.node);
      selectors.push(selector);
    },
  });
  return { expr, errors, selectors };
});
process.stdout.write(JSON.stringify(results));
