// Front end tests: lexer, parser, CST -> AST, and the wording of syntax errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MtcError, formatError } from '../compiler/diagnostics.ts';
import type { Decl, Expr, Member, Stmt } from '../grammar/ast.ts';
import { parseFile, parseSource } from '../grammar/index.ts';

// ---- helpers ----------------------------------------------------------------------------------

type Layer = Extract<Decl, { kind: 'layer' }>;

function layer(decls: Decl[], name: string): Layer {
  const d = decls.find((x): x is Layer => x.kind === 'layer' && x.name === name);
  assert.ok(d, `layer ${name} not found`);
  return d;
}

function member<K extends Member['kind']>(l: Layer, kind: K, name?: string): Extract<Member, { kind: K }> {
  const m = l.members.find((x) => x.kind === kind && (name === undefined || ('name' in x && x.name === name)));
  assert.ok(m, `${kind} ${name ?? ''} not found in ${l.name}`);
  return m as Extract<Member, { kind: K }>;
}

function forwardBody(l: Layer): Stmt[] {
  return member(l, 'forward').body;
}

/** The value of the single `x = ...` entry of `hyper { x = <src> }`. */
function expr(src: string): Expr {
  const prog = parseSource(`hyper { x = ${src} }`, 'expr.mt');
  const h = prog.decls[0];
  assert.equal(h.kind, 'hyper');
  return (h as Extract<Decl, { kind: 'hyper' }>).entries[0].value;
}

/** A compact S-expression of an expression, without locations, for precedence checks. */
function show(e: Expr): string {
  switch (e.kind) {
    case 'num': return e.text;
    case 'str': return JSON.stringify(e.value);
    case 'name': return e.name;
    case 'ellipsis': return '...';
    case 'list': return `[${e.items.map(show).join(' ')}]`;
    case 'unary': return `(neg ${show(e.arg)})`;
    case 'binary': return `(${e.op} ${show(e.left)} ${show(e.right)})`;
    case 'index': return `(idx ${show(e.target)} ${show(e.index)})`;
    case 'call': return `(${e.callee}${e.args.map((a) => ' ' + (a.name ? `${a.name}=` : '') + show(a.value)).join('')})`;
  }
}

/** The formatted error for a bad source; fails if it parses or throws anything but an MtcError. */
function errorOf(src: string): string {
  try {
    parseSource(src, 'bad.mt');
  } catch (e) {
    assert.ok(e instanceof MtcError, `expected MtcError, got ${String(e)}`);
    return formatError(e);
  }
  assert.fail('expected a syntax error');
}

// ---- the model files --------------------------------------------------------------------------
// These files are edited as the project grows, so these tests check structure, not line numbers;
// exact locations are checked on inline sources below.

test('stdlib.mt parses into its eleven layers', () => {
  const prog = parseFile('models/stdlib.mt');
  assert.equal(prog.file, 'models/stdlib.mt');
  assert.deepEqual(
    prog.decls.map((d) => (d.kind === 'layer' ? `${d.isModel ? 'model' : 'layer'} ${d.name}` : d.kind)),
    [
      'layer RMSNorm', 'layer RowThenCol', 'layer FrobeniusAttention', 'layer GatedUpdate', 'layer ThinkingLayer',
      'layer ThinkingBlock', 'layer MatrixEmbedding', 'layer MultiProbeHead', 'layer VectorCollapseHead',
      'layer MatrixProductAttention', 'layer MatrixProductThinkingBlock',
    ],
  );
  const att = layer(prog.decls, 'FrobeniusAttention');
  assert.deepEqual(att.params.map((p) => p.name), ['n', 'heads', 'p']);
  assert.equal(att.params[1].loc.file, 'models/stdlib.mt');
  assert.deepEqual(att.members.map((m) => m.kind), ['sub', 'sub', 'sub', 'sub', 'sub', 'forward']);
});

test('stdlib.mt: param A of RowThenCol is eye + normal(0.02)', () => {
  const rtc = layer(parseFile('models/stdlib.mt').decls, 'RowThenCol');
  const a = member(rtc, 'param', 'A');
  assert.deepEqual(a.shape.map(show), ['n', 'n']);
  assert.ok(a.init.kind === 'binary');
  assert.equal(a.init.op, '+');
  assert.equal(a.init.left.kind, 'name');
  assert.equal(show(a.init.left), 'eye');
  assert.ok(a.init.right.kind === 'call');
  assert.equal(a.init.right.callee, 'normal');
  assert.deepEqual(a.init.right.args.map((x) => x.value.kind === 'num' && x.value.value), [0.02]);
  const ret = forwardBody(rtc)[0];
  assert.ok(ret.kind === 'return');
  assert.equal(show(ret.value), '(@ (silu (@ A X)) B)');
});

test('stdlib.mt: scalar params, unary minus and axis lists', () => {
  const prog = parseFile('models/stdlib.mt');
  const think = layer(prog.decls, 'ThinkingLayer');
  const bm = member(think, 'param', 'b_m');
  assert.deepEqual(bm.shape, []);
  assert.equal(show(bm.init), '(neg 2)');
  assert.equal(show(member(think, 'param', 'scale').init), '0.1');

  const ret = forwardBody(layer(prog.decls, 'RMSNorm'))[0];
  assert.ok(ret.kind === 'return');
  assert.equal(show(ret.value), '(* (* M (rsqrt (+ (mean (* M M) [(neg 2) (neg 1)]) 1e-6))) g)');
});

test('stdlib.mt: reshape to [..., heads, n * n / heads] has an ellipsis', () => {
  const att = layer(parseFile('models/stdlib.mt').decls, 'FrobeniusAttention');
  const q = forwardBody(att).find((s) => s.kind === 'assign' && s.name === 'Q');
  assert.ok(q && q.kind === 'assign' && q.value.kind === 'call' && q.value.callee === 'transpose');
  const reshape = q.value.args[0].value;
  assert.ok(reshape.kind === 'call' && reshape.callee === 'reshape');
  const shape = reshape.args[1].value;
  assert.ok(shape.kind === 'list');
  assert.equal(shape.items[0].kind, 'ellipsis');
  assert.equal(show(shape), '[... heads (/ (* n n) heads)]');
  const s = forwardBody(att).find((x) => x.kind === 'assign' && x.name === 'S');
  assert.equal(s && s.kind === 'assign' && show(s.value), '(/ (@ Q (transpose K)) (sqrt (/ (* n n) heads)))');
});

test('matrix_thinker.mt: import, hyper, presets, model and train', () => {
  const prog = parseFile('models/matrix_thinker.mt');
  const kinds = prog.decls.map((d) => d.kind);
  assert.deepEqual(kinds.slice(0, 2), ['import', 'hyper']);
  assert.deepEqual(kinds.filter((k) => k === 'layer' || k === 'train'), ['layer', 'train']);
  const imp = prog.decls[0];
  assert.ok(imp.kind === 'import' && imp.path === 'stdlib.mt');

  const hyper = prog.decls[1];
  assert.ok(hyper.kind === 'hyper');
  for (const name of ['d', 'heads', 'n_blocks', 'T', 'probes', 'dropout', 'vocab', 'ctx', 'lr', 'warmup']) {
    assert.ok(hyper.entries.some((e) => e.name === name), `hyper entry ${name}`);
  }
  const presets = prog.decls.filter((d): d is Extract<Decl, { kind: 'preset' }> => d.kind === 'preset');
  assert.deepEqual(presets.map((p) => p.name).sort(), ['full', 'tiny']);
  const lr = presets.find((p) => p.name === 'full')!.entries.find((e) => e.name === 'lr');
  assert.ok(lr && lr.value.kind === 'num');
  assert.deepEqual([lr.value.text, lr.value.value], ['3e-4', 3e-4]);

  const model = layer(prog.decls, 'MatrixThinker');
  assert.ok(model.isModel);
  assert.deepEqual(model.params, []);
  const blocks = member(model, 'sub', 'blocks');
  assert.equal(show(blocks.call), '(ThinkingBlock d heads dropout)');
  assert.ok(blocks.count);
  assert.equal(show(blocks.count), 'n_blocks');
  assert.equal(member(model, 'sub', 'embed').count, undefined);

  const train = prog.decls.find((d) => d.kind === 'train');
  assert.ok(train && train.kind === 'train');
  const entry = (n: string) => train.entries.find((e) => e.name === n)!.value;
  const data = entry('data');
  assert.ok(data.kind === 'str' && data.value === 'sotu');
  const opt = entry('optimizer');
  assert.ok(opt.kind === 'call' && opt.callee === 'adamw');
  assert.deepEqual(opt.args.map((a) => a.name), ['lr', 'betas', 'eps', 'weight_decay']);
  assert.equal(show(opt), '(adamw lr=lr betas=[0.9 0.98] eps=1e-8 weight_decay=0.01)');
  assert.equal(show(entry('schedule')), '(warmup_cosine warmup=warmup)');
});

test('matrix_thinker.mt: repeat holds a for loop and an observe', () => {
  const model = layer(parseFile('models/matrix_thinker.mt').decls, 'MatrixThinker');
  const fwd = member(model, 'forward');
  assert.deepEqual(fwd.params.map((p) => p.name), ['tokens']);
  const rep = fwd.body.find((s) => s.kind === 'repeat');
  assert.ok(rep && rep.kind === 'repeat');
  assert.equal(show(rep.count), 'T');
  assert.deepEqual(rep.body.map((s) => s.kind), ['for', 'observe']);
  const loop = rep.body[0];
  assert.ok(loop.kind === 'for' && loop.varName === 'blk' && show(loop.iterable) === 'blocks');
  assert.deepEqual(loop.body.map((s) => s.kind === 'assign' && `${s.name}=${show(s.value)}`), ['M=(blk M)']);
  const obs = rep.body[1];
  assert.ok(obs.kind === 'observe' && obs.name === 'residual' && show(obs.value) === 'M');
});

test('locations: first token, whole construct when on one line', () => {
  const src = [
    'import "stdlib.mt"',
    'layer RowThenCol(n, heads) {',
    '  param A: [n, n] = eye + normal(0.02)',
    '  blocks = [Block(n); 2]',
    '  forward(X) {',
    '    repeat T {',
    '      observe residual = silu(A @ X)',
    '    }',
    '  }',
    '}',
  ].join('\n');
  const prog = parseSource(src, 'loc.mt');
  const f = 'loc.mt';
  assert.deepEqual(prog.decls[0].loc, { file: f, line: 1, col: 1, length: 18 });
  const l = layer(prog.decls, 'RowThenCol');
  assert.deepEqual(l.loc, { file: f, line: 2, col: 1, length: 5 }); // multi-line: the keyword
  assert.deepEqual(l.params[1].loc, { file: f, line: 2, col: 21, length: 5 });
  const a = member(l, 'param', 'A');
  assert.deepEqual(a.loc, { file: f, line: 3, col: 3, length: 36 });
  assert.ok(a.init.kind === 'binary' && a.init.right.kind === 'call');
  assert.deepEqual(a.init.loc, { file: f, line: 3, col: 21, length: 18 });
  assert.deepEqual(a.init.left.loc, { file: f, line: 3, col: 21, length: 3 });
  assert.deepEqual(a.init.right.calleeLoc, { file: f, line: 3, col: 27, length: 6 });
  assert.deepEqual(a.init.right.loc, { file: f, line: 3, col: 27, length: 12 });
  assert.deepEqual(member(l, 'sub', 'blocks').loc, { file: f, line: 4, col: 3, length: 22 });
  const rep = member(l, 'forward').body[0];
  assert.ok(rep.kind === 'repeat');
  assert.deepEqual(rep.loc, { file: f, line: 6, col: 5, length: 6 });
  assert.deepEqual(rep.body[0].loc, { file: f, line: 7, col: 7, length: 30 });
});

// ---- expressions and small syntax -------------------------------------------------------------

test('precedence and associativity', () => {
  assert.equal(show(expr('a + b * c @ d')), '(+ a (@ (* b c) d))');
  assert.equal(show(expr('a - b - c')), '(- (- a b) c)');
  assert.equal(show(expr('a / b * c')), '(* (/ a b) c)');
  assert.equal(show(expr('(a + b) * c')), '(* (+ a b) c)');
  assert.equal(show(expr('-a[0] * b')), '(* (neg (idx a 0)) b)');
  assert.equal(show(expr('- -x - 1')), '(- (neg (neg x)) 1)');
  assert.equal(show(expr('a * -b')), '(* a (neg b))');
  assert.equal(show(expr('x[1][i + 1]')), '(idx (idx x 1) (+ i 1))');
  assert.equal(show(expr('[a, b][0]')), '(idx [a b] 0)');
});

test('calls, lists, numbers and strings', () => {
  assert.equal(show(expr('f()')), '(f)');
  assert.equal(show(expr('f(x, y = 2, z = [])')), '(f x y=2 z=[])');
  assert.equal(show(expr('[..., n, 1]')), '[... n 1]');
  const nums = expr('[3, 0.02, 1e-6, 2.5E+3, 007]');
  assert.ok(nums.kind === 'list');
  assert.deepEqual(nums.items.map((n) => n.kind === 'num' && [n.text, n.value]), [
    ['3', 3], ['0.02', 0.02], ['1e-6', 1e-6], ['2.5E+3', 2500], ['007', 7],
  ]);
  const s = expr('"a\\"b\\\\c\\nd\\te"');
  assert.ok(s.kind === 'str');
  assert.equal(s.value, 'a"b\\c\nd\te');
  const call = expr('softmax(x, axis = -1)');
  assert.ok(call.kind === 'call');
  assert.deepEqual(call.calleeLoc, { file: 'expr.mt', line: 1, col: 13, length: 7 });
  assert.deepEqual(call.args[1].loc, { file: 'expr.mt', line: 1, col: 24, length: 9 });
});

test('keywords need whole words; comments, semicolons and empty parameter lists', () => {
  const prog = parseSource(
    [
      '# leading comment',
      'hyper { inputs = 1; forwarded = 2; in_dim = 3 } # trailing',
      'fn add(a, b) { c = a + b; return c }',
      'model M() { forward(x) { return add(x, x) } }',
      'layer L { }',
      ';',
    ].join('\n'),
    'kw.mt',
  );
  assert.deepEqual(prog.decls.map((d) => d.kind), ['hyper', 'fn', 'layer', 'layer']);
  const h = prog.decls[0];
  assert.ok(h.kind === 'hyper');
  assert.deepEqual(h.entries.map((e) => e.name), ['inputs', 'forwarded', 'in_dim']);
  const fn = prog.decls[1];
  assert.ok(fn.kind === 'fn' && fn.name === 'add');
  assert.deepEqual(fn.params.map((p) => p.name), ['a', 'b']);
  assert.deepEqual(fn.body.map((s) => s.kind), ['assign', 'return']);
  const m = prog.decls[2];
  assert.ok(m.kind === 'layer' && m.isModel && m.params.length === 0);
  const l = prog.decls[3];
  assert.ok(l.kind === 'layer' && !l.isModel && l.params.length === 0 && l.members.length === 0);
  assert.deepEqual(parseSource('', 'empty.mt'), { file: 'empty.mt', decls: [] });
});

// ---- syntax errors: the exact text the user sees ----------------------------------------------

const badCases: [string, string, string][] = [
  [
    'unexpected character',
    'hyper {\n  d = 32 $\n}\n',
    "bad.mt:2:10: error: unexpected character '$'\n2 |   d = 32 $\n             ^",
  ],
  [
    'unterminated string',
    'train {\n  data = "sotu\n}\n',
    'bad.mt:2:10: error: unterminated string\n2 |   data = "sotu\n             ^~~~~',
  ],
  [
    "missing ')' of a call",
    'layer A(n) {\n  forward(M) {\n    return silu(M\n  }\n}\n',
    "bad.mt:4:3: error: expected ')' to close the call to 'silu' but found '}'\n4 |   }\n      ^",
  ],
  [
    "missing '}' at the end of the file",
    'layer A(n) {\n  forward(M) {\n    return M\n  }\n',
    "bad.mt:4:3: error: expected '}' to close layer 'A' (opened on line 1) but found the end of the file\n4 |   }\n      ^",
  ],
  [
    'param without a shape',
    'layer A(n) {\n  param g = ones\n}\n',
    "bad.mt:2:11: error: expected ':' and a shape such as '[n, n]' after 'param g' but found '='\n2 |   param g = ones\n              ^",
  ],
  [
    "param without '='",
    'layer A(n) {\n  param g: [n, n] ones\n}\n',
    "bad.mt:2:19: error: expected '=' after the parameter shape but found 'ones'\n2 |   param g: [n, n] ones\n                      ^~~~",
  ],
  [
    'stray token at the top level',
    'hyper { d = 1 }\n)\npreset tiny { d = 2 }\n',
    "bad.mt:2:1: error: expected a declaration ('import', 'hyper', 'preset', 'layer', 'model', 'fn' or 'train') but found ')'\n2 | )\n    ^",
  ],
  [
    'two errors in one file',
    'hyper {\n  a = (1 + 2\n}\nfn f(x) {\n  return x +\n}\n',
    "bad.mt:3:1: error: expected ')' to close the parenthesised expression but found '}'\n3 | }\n    ^\n" +
      "bad.mt:6:1: error: expected an expression but found '}'\n6 | }\n    ^",
  ],
  [
    'malformed numbers',
    'hyper {\n  lr = 1e\n  eps = 1.2.3\n}\n',
    "bad.mt:2:8: error: malformed number '1e'\n2 |   lr = 1e\n           ^~\n" +
      "bad.mt:3:9: error: malformed number '1.2.3'\n3 |   eps = 1.2.3\n            ^~~~~",
  ],
  [
    'missing list item',
    'hyper { x = [1, ] }\n',
    "bad.mt:1:17: error: expected an expression but found ']'\n1 | hyper { x = [1, ] }\n                    ^",
  ],
  [
    'sub-layer that is not a call',
    'layer A { x = 3 }\n',
    "bad.mt:1:15: error: expected a layer call such as 'RMSNorm(n)' or '[Block(args); count]' after 'x =' but found '3'\n1 | layer A { x = 3 }\n                  ^",
  ],
  [
    "layer array without ';'",
    'model M {\n  blocks = [Block(1) n]\n}\n',
    "bad.mt:2:22: error: expected ';' between the layer call and the count in '[Layer(args); count]' but found 'n'\n2 |   blocks = [Block(1) n]\n                         ^",
  ],
  [
    "for without 'in'",
    'fn f(a) {\n  for x y { }\n}\n',
    "bad.mt:2:9: error: expected 'in' after the loop variable 'x' but found 'y'\n2 |   for x y { }\n            ^",
  ],
  [
    'unknown escape',
    'train { data = "a\\qb" }\n',
    "bad.mt:1:18: error: unknown escape sequence '\\q' in string\n1 | train { data = \"a\\qb\" }\n                     ^~",
  ],
  [
    'import without quotes',
    'import stdlib\n',
    "bad.mt:1:8: error: expected a file name in quotes after 'import' but found 'stdlib'\n1 | import stdlib\n           ^~~~~~",
  ],
  [
    "missing ']' of an index",
    'hyper { x = a[1 }\n',
    "bad.mt:1:17: error: expected ']' to close the index but found '}'\n1 | hyper { x = a[1 }\n                    ^",
  ],
];

for (const [name, src, expected] of badCases) {
  test(`syntax error: ${name}`, () => {
    assert.equal(errorOf(src), expected);
  });
}

test('an unreadable file is an MtcError naming the path', () => {
  assert.throws(() => parseFile('models/no_such_model.mt'), (e: unknown) => {
    assert.ok(e instanceof MtcError);
    assert.equal(formatError(e), "error: cannot read 'models/no_such_model.mt': no such file");
    return true;
  });
});

// ---- robustness: nothing but MtcError ever escapes -----------------------------------------------

test('random bytes and token soups either parse or throw MtcError', () => {
  let seed = 20240601;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const words = [
    'layer', 'model', 'fn', 'hyper', 'preset', 'train', 'param', 'forward', 'return', 'repeat', 'for', 'in',
    'observe', 'import', 'x', 'M', '(', ')', '[', ']', '{', '}', ',', ';', ':', '=', '+', '-', '*', '/', '@',
    '...', '1', '2.5', '1e-3', '"s"', '"open', '\n', '# c\n', '$', '.', '1e', '1.2.3', '\\',
  ];
  let parsed = 0;
  let failed = 0;
  for (let i = 0; i < 400; i++) {
    let text = '';
    const n = rand(80);
    for (let j = 0; j < n; j++) {
      text += i % 2 === 0 ? String.fromCharCode(rand(256)) : words[rand(words.length)] + (rand(2) ? ' ' : '');
    }
    try {
      parseSource(text, 'fuzz.mt');
      parsed++;
    } catch (e) {
      assert.ok(e instanceof MtcError, `non-MtcError for ${JSON.stringify(text)}: ${String(e)}`);
      assert.ok(e.diagnostics.length > 0);
      for (const d of e.diagnostics) {
        assert.ok(d.loc && d.loc.line >= 1 && d.loc.col >= 1, `bad location for ${JSON.stringify(text)}`);
        assert.doesNotMatch(d.message, /undefined|NaN|\n/);
      }
      assert.equal(typeof formatError(e), 'string');
      failed++;
    }
  }
  assert.equal(parsed + failed, 400);
  assert.ok(failed > 300, 'most random input should be rejected');
});

test('deep nesting is an MtcError, not a stack overflow', () => {
  const nested = (n: number) => 'hyper { x = ' + '('.repeat(n) + '1' + ')'.repeat(n) + ' }';
  assert.equal(show(expr('(((((1)))))')), '1');
  assert.equal(parseSource(nested(100), 'deep.mt').decls.length, 1);
  assert.throws(
    () => parseSource(nested(20000), 'deep.mt'),
    (e: unknown) => e instanceof MtcError && e.message === 'the source is nested too deeply to parse',
  );
  // The shared parser instance is still usable afterwards.
  assert.equal(parseFile('models/stdlib.mt').decls.length, 11);
});
