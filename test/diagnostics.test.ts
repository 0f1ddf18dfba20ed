// A catalogue of mistakes a user makes in a .mt file or on the command line, each pinned to the
// exact text mtc prints: `file:line:col: error: <one sentence>`, the source line and a caret (or
// `error: <sentence>` for a mistake with no place in the source). Every one must arrive as an
// MtcError, never as a TypeError or a stack trace.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatDiagnostic, formatError, MtcError, registerSource } from '../compiler/diagnostics.ts';
import { buildGraph, type CompileOptions } from '../compiler/pipeline.ts';
import { planProgram } from '../compiler/plan.ts';
import { repoRoot, stdlibPath, tempModel } from './helpers/models.ts';

interface Case {
  name: string;
  /** the .mt source; `@STDLIB@` stands for the absolute path of models/stdlib.mt */
  src: string;
  opts?: CompileOptions;
  /** the formatted diagnostic, lines */
  expect: string[];
}

/** Compiles up to the plan; returns the formatted error with the temp path replaced by `model.mt`. */
function diagnose(src: string, opts: CompileOptions = {}): string {
  const file = tempModel(src.replaceAll('@STDLIB@', stdlibPath));
  try {
    planProgram(buildGraph(file, opts).graph);
  } catch (e) {
    if (!(e instanceof MtcError)) throw new Error(`expected an MtcError, got ${String((e as Error)?.stack ?? e)}`);
    return formatError(e).replaceAll(file, 'model.mt');
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  throw new Error('expected a diagnostic, but the source compiled');
}

/** A small model that compiles: vocab 16, tokens [2, 8]. Lines 1-10; `body` replaces the return. */
const TRAIN = `train {
  ctx = 8
  batch = 2
  steps = 1
  loss = cross_entropy
}`;
const tiny = (forwardBody: string, members = '', hyper = '  vocab = 16') => `hyper {
${hyper}
}
model M {
  param E: [vocab, 4] = normal(1)
  param W: [4, vocab] = normal(1)
${members}  forward(tokens) {
${forwardBody}
  }
}
${TRAIN}
`;

const cases: Case[] = [
  // ---- lexer ----------------------------------------------------------------------------------
  {
    name: 'lexer: a character no token starts with',
    src: tiny('    return gather(E, tokens) @ W % 2'),
    expect: [
      "model.mt:8:34: error: unexpected character '%'",
      '8 |     return gather(E, tokens) @ W % 2',
      '                                     ^',
    ],
  },
  {
    name: 'lexer: a malformed number',
    src: tiny('    return gather(E, tokens) @ W * 1.2.3'),
    expect: [
      "model.mt:8:36: error: malformed number '1.2.3'",
      '8 |     return gather(E, tokens) @ W * 1.2.3',
      '                                       ^~~~~',
    ],
  },
  {
    name: 'lexer: a number too large for a float',
    src: tiny('', '', '  vocab = 1e999'),
    expect: [
      "model.mt:2:11: error: number '1e999' is too large",
      '2 |   vocab = 1e999',
      '              ^~~~~',
    ],
  },
  {
    name: 'lexer: an unterminated string',
    src: tiny('    return gather(E, tokens) @ W').replace('  ctx = 8', '  data = "sotu\n  ctx = 8'),
    expect: [
      'model.mt:12:10: error: unterminated string',
      '12 |   data = "sotu',
      '              ^~~~~',
    ],
  },
  // ---- parser ---------------------------------------------------------------------------------
  {
    name: "parser: a call missing its ')'",
    src: tiny('    return silu(gather(E, tokens) @ W'),
    expect: [
      "model.mt:9:3: error: expected ')' to close the call to 'silu' but found '}'",
      '9 |   }',
      '      ^',
    ],
  },
  {
    name: "parser: an entry whose value is missing at the end of its line ('micro_batch =')",
    src: tiny('    return gather(E, tokens) @ W', '', '  vocab = 16\n  micro =\n  batch = 2'),
    expect: [
      "model.mt:4:9: error: expected an entry 'name = value' or '}' but found '=': line 3 ends with 'micro =' and no value, so 'batch' on line 4 was read as its value",
      '4 |   batch = 2',
      '            ^',
    ],
  },
  {
    name: 'parser: three mistakes reported at once',
    src: `hyper {
  vocab = 16
  d = * 2
}
model M {
  param E: [vocab 4] = normal(1)
  forward(tokens) {
    return gather(E, tokens) +
  }
}
${TRAIN}
`,
    expect: [
      "model.mt:3:7: error: expected an expression but found '*'",
      '3 |   d = * 2',
      '          ^',
      "model.mt:6:19: error: expected ']' to close the parameter shape but found '4'",
      '6 |   param E: [vocab 4] = normal(1)',
      '                      ^',
      "model.mt:9:3: error: expected an expression but found '}'",
      '9 |   }',
      '      ^',
    ],
  },
  {
    name: "parser: a '}' missing at the end of the file",
    src: `model M {
  forward(tokens) {
    return tokens
  }
`,
    expect: [
      "model.mt:4:3: error: expected '}' to close model 'M' (opened on line 1) but found the end of the file",
      '4 |   }',
      '      ^',
    ],
  },
  // ---- names ----------------------------------------------------------------------------------
  {
    name: 'an unknown name',
    src: tiny('    return gather(E, tokenz) @ W'),
    expect: [
      "model.mt:8:22: error: unknown name 'tokenz'",
      '8 |     return gather(E, tokenz) @ W',
      '                         ^~~~~~',
    ],
  },
  {
    name: 'an unknown layer',
    src: tiny('    return gather(E, tokens) @ W', '  norm = VectorNorm(4)\n'),
    expect: [
      "model.mt:7:10: error: unknown layer 'VectorNorm'",
      '7 |   norm = VectorNorm(4)',
      '             ^~~~~~~~~~',
    ],
  },
  {
    name: 'an unknown function',
    src: tiny('    return gelu(gather(E, tokens)) @ W'),
    expect: [
      "model.mt:8:12: error: unknown function or layer 'gelu'",
      '8 |     return gelu(gather(E, tokens)) @ W',
      '               ^~~~',
    ],
  },
  {
    name: 'a layer called without being a member',
    src: `import "@STDLIB@"\n${tiny('    return RMSNorm(gather(E, tokens)) @ W')}`,
    expect: [
      'model.mt:9:12: error: layer RMSNorm must be declared as a member (e.g. `norm = RMSNorm(...)`) before it is called',
      '9 |     return RMSNorm(gather(E, tokens)) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a function used as a layer',
    src: `fn twice(x) {\n  return x + x\n}\n${tiny('    return gather(E, tokens) @ W', '  t = twice(4)\n')}`,
    expect: [
      "model.mt:10:7: error: 'twice' is a function, not a layer",
      '10 |   t = twice(4)',
      '           ^~~~~',
    ],
  },
  // ---- arity ----------------------------------------------------------------------------------
  {
    name: 'a builtin with the wrong number of arguments',
    src: tiny('    return softmax(gather(E, tokens) @ W, -1)'),
    expect: [
      'model.mt:8:12: error: softmax takes 1 argument, got 2',
      '8 |     return softmax(gather(E, tokens) @ W, -1)',
      '               ^~~~~~~',
    ],
  },
  {
    name: 'a layer built with the wrong number of arguments',
    src: `import "@STDLIB@"\n${tiny('    return gather(E, tokens) @ W', '  norm = RowThenCol(4, 4)\n')}`,
    expect: [
      'model.mt:8:10: error: layer RowThenCol takes 1 argument, got 2',
      '8 |   norm = RowThenCol(4, 4)',
      '             ^~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a forward called with the wrong number of arguments',
    src: `import "@STDLIB@"\n${tiny('    x = gather(E, tokens)\n    return rtc(x, x) @ W', '  rtc = RowThenCol(4)\n')}`,
    expect: [
      'model.mt:11:12: error: the forward of RowThenCol takes 1 argument, got 2',
      '11 |     return rtc(x, x) @ W',
      '                ^~~~~~~~~',
    ],
  },
  {
    name: 'a function called with the wrong number of arguments',
    src: `fn twice(x) {\n  return x + x\n}\n${tiny('    return twice(gather(E, tokens) @ W, 2)')}`,
    expect: [
      'model.mt:11:12: error: function twice takes 1 argument, got 2',
      '11 |     return twice(gather(E, tokens) @ W, 2)',
      '                ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  // ---- shapes ---------------------------------------------------------------------------------
  {
    name: "shapes: '+' that does not broadcast",
    src: tiny('    return gather(E, tokens) @ W + E'),
    expect: [
      'model.mt:8:12: error: cannot add tensors of shapes [2, 8, 16] and [16, 4]: they do not broadcast',
      '8 |     return gather(E, tokens) @ W + E',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "shapes: '*' that does not broadcast",
    src: tiny('    return (gather(E, tokens) * W) @ W'),
    expect: [
      'model.mt:8:13: error: cannot multiply tensors of shapes [2, 8, 4] and [4, 16]: they do not broadcast',
      '8 |     return (gather(E, tokens) * W) @ W',
      '                ^~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "shapes: '@' with different inner sizes",
    src: tiny('    return gather(E, tokens) @ E'),
    expect: [
      'model.mt:8:12: error: matrix product of shapes [2, 8, 4] and [16, 4]: inner sizes 4 and 16 differ',
      '8 |     return gather(E, tokens) @ E',
      '               ^~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: reshape to a different element count',
    src: tiny('    return reshape(gather(E, tokens) @ W, [2, 8, 15])'),
    expect: [
      'model.mt:8:12: error: cannot reshape [2, 8, 16] (256 elements) to [2, 8, 15] (240 elements)',
      '8 |     return reshape(gather(E, tokens) @ W, [2, 8, 15])',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "shapes: reshape with '...' that no trailing axes fit",
    src: tiny('    return reshape(gather(E, tokens) @ W, [..., 5, 3])'),
    expect: [
      'model.mt:8:12: error: reshape: no trailing axes of shape [2, 8, 16] hold 15 elements for [..., 5, 3]',
      '8 |     return reshape(gather(E, tokens) @ W, [..., 5, 3])',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "shapes: an ambiguous reshape with '...'",
    src: tiny('    x = reshape(gather(E, tokens), [..., 1, 4], 1)\n    return reshape(x, [..., 4]) @ W'),
    expect: [
      "model.mt:9:12: error: reshape of shape [2, 8, 1, 4] to [..., 4] is ambiguous: '...' could keep 3 or 2 axes; pass the number of replaced axes as a third argument",
      '9 |     return reshape(x, [..., 4]) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: a reduction axis out of range',
    src: tiny('    return sum(gather(E, tokens), [3]) @ W'),
    expect: [
      'model.mt:8:12: error: sum: axis 3 is out of range for a tensor of rank 3',
      '8 |     return sum(gather(E, tokens), [3]) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: transpose axes out of range',
    src: tiny('    return transpose(gather(E, tokens), 0, 5) @ W'),
    expect: [
      'model.mt:8:12: error: transpose axes 0 and 5 are out of range for a tensor of rank 3',
      '8 |     return transpose(gather(E, tokens), 0, 5) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: a slice past the end',
    src: tiny('    return gather(slice(E, 0, 12, 8), tokens) @ W'),
    expect: [
      'model.mt:8:19: error: slice [12, 20) of axis 0 is out of range for shape [16, 4]',
      '8 |     return gather(slice(E, 0, 12, 8), tokens) @ W',
      '                      ^~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: gather with float indices',
    src: tiny('    return gather(E, gather(E, tokens)) @ W'),
    expect: [
      'model.mt:8:12: error: gather needs integer indices, got a float tensor of shape [2, 8, 4]',
      '8 |     return gather(E, gather(E, tokens)) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'shapes: a tensor too large for the device',
    src: tiny('    return gather(E, tokens) @ W', '  param Big: [100000, 100000] = zeros\n'),
    expect: [
      'model.mt:7:3: error: a tensor of shape [100000, 100000] is too large: more than 2147483647 elements (a smaller micro_batch, batch, ctx or model size shrinks it)',
      '7 |   param Big: [100000, 100000] = zeros',
      '      ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  // ---- declarations ---------------------------------------------------------------------------
  {
    name: 'a layer declared twice',
    src: `layer L(n) {\n  param g: [n] = ones\n}\nlayer L(n) {\n  param h: [n] = ones\n}\n${tiny('    return gather(E, tokens) @ W')}`,
    expect: [
      "model.mt:4:1: error: 'L' is already defined at model.mt:1:1",
      '4 | layer L(n) {',
      '    ^~~~~',
    ],
  },
  {
    name: 'a parameter declared twice',
    src: tiny('    return gather(E, tokens) @ W', '  param E: [vocab, 4] = zeros\n'),
    expect: [
      "model.mt:7:3: error: 'E' is declared twice in layer M",
      '7 |   param E: [vocab, 4] = zeros',
      '      ^~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a hyperparameter defined twice',
    src: tiny('    return gather(E, tokens) @ W', '', '  vocab = 16\n  vocab = 32'),
    expect: [
      "model.mt:3:3: error: hyperparameter 'vocab' is defined twice",
      '3 |   vocab = 32',
      '      ^~~~~~~~~~',
    ],
  },
  {
    name: 'a preset setting an unknown hyperparameter',
    src: tiny('    return gather(E, tokens) @ W') + 'preset small {\n  vocabulary = 8\n}\n',
    opts: { preset: 'small' },
    expect: [
      "model.mt:18:3: error: preset 'small' sets 'vocabulary', which is not a hyperparameter of the hyper section",
      '18 |   vocabulary = 8',
      '       ^~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a preset declared twice',
    src: tiny('    return gather(E, tokens) @ W') + 'preset small {\n  vocab = 8\n}\npreset small {\n  vocab = 4\n}\n',
    expect: [
      "model.mt:20:1: error: preset 'small' is declared twice",
      '20 | preset small {',
      '     ^~~~~~',
    ],
  },
  {
    name: 'a model with no forward',
    src: `hyper {\n  vocab = 16\n}\nmodel M {\n  param E: [vocab, 4] = normal(1)\n}\n${TRAIN}\n`,
    expect: [
      'model.mt:4:1: error: model M has no forward function',
      '4 | model M {',
      '    ^~~~~',
    ],
  },
  {
    name: 'a file without a model',
    src: `layer L(n) {\n  param g: [n] = ones\n}\n`,
    expect: [
      'model.mt:1:1: error: this file declares no model (write `model Name { ... }`)',
      '1 | layer L(n) {',
      '    ^',
    ],
  },
  // ---- the train section ----------------------------------------------------------------------
  {
    name: 'an unknown train setting',
    src: tiny('    return gather(E, tokens) @ W').replace('  steps = 1', '  steps = 1\n  epochs = 3'),
    expect: [
      "model.mt:15:3: error: unknown train setting 'epochs'; known: data, tokenizer, ctx, batch, micro_batch, steps, loss, optimizer, schedule, clip, log_every, eval_every, eval_batches, val_fraction, seed, checkpoint, f16",
      '15 |   epochs = 3',
      '       ^~~~~~~~~~',
    ],
  },
  {
    name: 'an optimizer other than adamw',
    src: tiny('    return gather(E, tokens) @ W').replace('  steps = 1', '  steps = 1\n  optimizer = sgd(lr = 0.1)'),
    expect: [
      "model.mt:15:15: error: the optimizer must be adamw(...), got 'sgd(...)'",
      '15 |   optimizer = sgd(lr = 0.1)',
      '                   ^~~~~~~~~~~~~',
    ],
  },
  {
    name: 'adamw betas that are not a pair',
    src: tiny('    return gather(E, tokens) @ W').replace('  steps = 1', '  steps = 1\n  optimizer = adamw(lr = 0.1, betas = 0.9)'),
    expect: [
      "model.mt:15:3: error: adamw: 'betas' must be a list of two numbers such as [0.9, 0.98], got the number 0.9",
      '15 |   optimizer = adamw(lr = 0.1, betas = 0.9)',
      '       ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a negative learning rate',
    src: tiny('    return gather(E, tokens) @ W').replace('  steps = 1', '  steps = 1\n  optimizer = adamw(lr = -0.1)'),
    expect: [
      "model.mt:15:3: error: adamw: 'lr' must be a positive number, got -0.1",
      '15 |   optimizer = adamw(lr = -0.1)',
      '       ^~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a fractional warmup',
    src: tiny('    return gather(E, tokens) @ W').replace('  steps = 1', '  steps = 1\n  schedule = warmup_cosine(warmup = 2.5)'),
    expect: [
      "model.mt:15:3: error: warmup_cosine: 'warmup' must be a whole number ≥ 0, got 2.5",
      '15 |   schedule = warmup_cosine(warmup = 2.5)',
      '       ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a train section without ctx',
    src: tiny('    return gather(E, tokens) @ W').replace('  ctx = 8\n', ''),
    expect: [
      "model.mt:11:1: error: the train section must set 'ctx'",
      '11 | train {',
      '     ^~~~~',
    ],
  },
  {
    name: 'a train section without batch',
    src: tiny('    return gather(E, tokens) @ W').replace('  batch = 2\n', ''),
    expect: [
      "model.mt:11:1: error: the train section must set 'batch'",
      '11 | train {',
      '     ^~~~~',
    ],
  },
  {
    name: 'no train section at all',
    src: tiny('    return gather(E, tokens) @ W').replace(TRAIN, ''),
    expect: [
      'model.mt:4:1: error: there is no train section; add one that sets at least ctx and batch',
      '4 | model M {',
      '    ^~~~~',
    ],
  },
  // ---- the model ------------------------------------------------------------------------------
  {
    name: 'a model returning the wrong shape',
    src: tiny('    return transpose(gather(E, tokens) @ W, 0, 1)'),
    expect: [
      "model.mt:8:5: error: the model's forward must return logits of shape [batch, ctx, vocab] = [2, 8, vocab], got [8, 2, 16]",
      '8 |     return transpose(gather(E, tokens) @ W, 0, 1)',
      '        ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "a model whose forward takes two arguments",
    src: tiny('    return gather(E, tokens) @ W').replace('forward(tokens)', 'forward(tokens, targets)'),
    expect: [
      "model.mt:7:3: error: the model's forward takes the tokens, one argument; it has 2",
      '7 |   forward(tokens, targets) {',
      '      ^~~~~~~',
    ],
  },
  {
    name: 'repeat with a count that is not a whole number',
    src: tiny('    x = gather(E, tokens)\n    repeat vocab / 3 {\n      x = silu(x)\n    }\n    return x @ W'),
    expect: [
      'model.mt:9:12: error: repeat needs a positive whole number of iterations, got the number 5.333333333333333',
      '9 |     repeat vocab / 3 {',
      '               ^~~~~~~~~',
    ],
  },
  {
    name: 'repeat zero times',
    src: tiny('    x = gather(E, tokens)\n    repeat vocab - 16 {\n      x = silu(x)\n    }\n    return x @ W'),
    expect: [
      'model.mt:9:12: error: repeat needs a positive whole number of iterations, got the number 0',
      '9 |     repeat vocab - 16 {',
      '               ^~~~~~~~~~',
    ],
  },
  {
    name: "init 'eye' of a parameter that is not square",
    src: tiny('    return gather(E, tokens) @ W', '  param P: [4, 3] = eye + normal(0.02)\n'),
    expect: [
      "model.mt:7:21: error: 'eye' initialises square matrices; parameter 'P' has shape [4, 3]",
      '7 |   param P: [4, 3] = eye + normal(0.02)',
      '                        ^~~',
    ],
  },
  {
    name: 'a negative parameter size',
    src: tiny('    return gather(E, tokens) @ W', '  param P: [4, 1 - vocab] = zeros\n'),
    expect: [
      "model.mt:7:16: error: sizes of parameter 'P' must be positive whole numbers, got -15",
      '7 |   param P: [4, 1 - vocab] = zeros',
      '                   ^~~~~~~~~',
    ],
  },
  {
    name: 'dropout with a probability of 1',
    src: tiny('    return dropout(gather(E, tokens), 1) @ W'),
    expect: [
      'model.mt:8:12: error: dropout probability must be in [0, 1), got 1',
      '8 |     return dropout(gather(E, tokens), 1) @ W',
      '               ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a layer array with a huge count',
    src: `import "@STDLIB@"\n${tiny('    return gather(E, tokens) @ W', '  blocks = [RMSNorm(4); 99999999999]\n')}`,
    expect: [
      'model.mt:8:25: error: 99999999999 layers are too many for one array (at most 10000)',
      '8 |   blocks = [RMSNorm(4); 99999999999]',
      '                            ^~~~~~~~~~~',
    ],
  },
  // ---- recursion ------------------------------------------------------------------------------
  {
    name: 'a function that calls itself',
    src: `fn f(x) {\n  return f(x) + 1\n}\n${tiny('    return f(gather(E, tokens)) @ W')}`,
    expect: [
      'model.mt:2:10: error: layers and functions nest more than 64 deep (is one calling itself?)',
      '2 |   return f(x) + 1',
      '             ^~~~',
    ],
  },
  // ---- compile-time arithmetic ----------------------------------------------------------------
  {
    name: 'a tensor operation in the hyper section',
    src: tiny('    return gather(E, tokens) @ W', '', '  vocab = 16\n  I = eye(4)'),
    expect: [
      'model.mt:3:7: error: tensor operations are only allowed inside a forward function',
      '3 |   I = eye(4)',
      '          ^~~~~~',
    ],
  },
  {
    name: 'division by zero in a compile-time expression',
    src: tiny('    return gather(E, tokens) @ W', '', '  vocab = 16\n  heads = 0\n  hd = vocab / heads'),
    expect: [
      'model.mt:4:8: error: division by zero in a compile-time expression',
      '4 |   hd = vocab / heads',
      '           ^~~~~~~~~~~~~',
    ],
  },
  {
    name: 'compile-time arithmetic that overflows',
    src: tiny('    return gather(E, tokens) @ W', '', '  vocab = 16\n  big = 1e300 * 1e300'),
    expect: [
      'model.mt:3:9: error: 1e+300 * 1e+300 is not a finite number',
      '3 |   big = 1e300 * 1e300',
      '            ^~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a compile-time log of zero',
    src: tiny('    return gather(E, tokens) @ W * log(vocab - 16)'),
    expect: [
      'model.mt:8:36: error: log(0) is not a finite number',
      '8 |     return gather(E, tokens) @ W * log(vocab - 16)',
      '                                       ^~~~~~~~~~~~~~~',
    ],
  },
  {
    name: 'a source nested too deeply',
    src: tiny(`    return gather(E, tokens) @ W * ${'('.repeat(250)}1${')'.repeat(250)}`),
    expect: [
      'model.mt:8:234: error: the source is nested too deeply to parse',
      `8 |     return gather(E, tokens) @ W * ${'('.repeat(250)}1${')'.repeat(250)}`,
      // the 201st bracket, counting the '{' of the model and of its forward
      `${' '.repeat(4 + 233)}^`,
    ],
  },
  {
    name: 'the model used as a layer',
    src: tiny('    return gather(E, tokens) @ W', '  inner = M()\n'),
    expect: [
      "model.mt:7:11: error: 'M' is the model, not a layer",
      '7 |   inner = M()',
      '              ^',
    ],
  },
  {
    name: 'observing a number',
    src: tiny('    observe scale = vocab / 4\n    return gather(E, tokens) @ W'),
    expect: [
      'model.mt:8:5: error: observe needs a tensor, got the number 4',
      '8 |     observe scale = vocab / 4',
      '        ^~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "a parameter called '__metadata__'",
    src: tiny('    return gather(E, tokens) @ W', '  param __metadata__: [4] = zeros\n'),
    expect: [
      "model.mt:7:3: error: a parameter of the model cannot be called '__metadata__' (checkpoints reserve that name)",
      '7 |   param __metadata__: [4] = zeros',
      '      ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  {
    name: "an observation called '__proto__'",
    src: tiny('    x = gather(E, tokens)\n    observe __proto__ = x\n    return x @ W'),
    expect: [
      "model.mt:9:5: error: an observation cannot be called '__proto__'; choose another name",
      '9 |     observe __proto__ = x',
      '        ^~~~~~~~~~~~~~~~~~~~~',
    ],
  },
  // ---- command line ---------------------------------------------------------------------------
  {
    name: '--preset naming a preset the file does not have',
    src: tiny('    return gather(E, tokens) @ W') + 'preset small {\n  vocab = 8\n}\n',
    opts: { preset: 'huge' },
    expect: [
      "error: unknown preset 'huge'; model.mt has 'small'",
    ],
  },
  {
    name: '--set naming something that is not a hyperparameter',
    src: tiny('    return gather(E, tokens) @ W'),
    opts: { sets: { vocab_size: '8' } },
    expect: [
      "error: --set vocab_size: 'vocab_size' is not a hyperparameter; known: vocab",
    ],
  },
  {
    name: '--set with a value that is not a number',
    src: tiny('    return gather(E, tokens) @ W'),
    opts: { sets: { vocab: 'sixteen' } },
    expect: [
      'error: --set vocab=sixteen: the value must be a decimal number (like 64, 3e-4 or 0.5)',
    ],
  },
];

// DUMP_DIAG=<file> writes what mtc prints for every case (as JSON) instead of comparing: the
// way to review a change of wording across the whole catalogue.
const dump: Record<string, string[]> = {};
for (const c of cases) {
  test(`diagnostic: ${c.name}`, () => {
    const got = diagnose(c.src, c.opts);
    dump[c.name] = got.split('\n');
    if (process.env.DUMP_DIAG) return;
    assert.equal(got, c.expect.join('\n'));
  });
}
after(() => {
  if (process.env.DUMP_DIAG) fs.writeFileSync(process.env.DUMP_DIAG, JSON.stringify(dump, null, 2));
});

test('the catalogue has at least 30 distinct mistakes', () => {
  assert.ok(cases.length >= 30);
  assert.equal(new Set(cases.map((c) => c.expect[0])).size, cases.length, 'two cases give the same first line');
});

test('mtc prints the diagnostic without a stack trace and exits 1; a malformed --set is a usage error (2)', () => {
  const file = tempModel(tiny('    return gather(E, tokens) @ W') + 'preset small {\n  vocab = 8\n}\n');
  const out = path.join(path.dirname(file), 'out');
  const mtc = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(repoRoot, 'bin/mtc.js'), 'compile', file, '-o', out, ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  try {
    const cases: Array<[string[], string]> = [
      [['--set', 'vocab_size=8'], "error: --set vocab_size: 'vocab_size' is not a hyperparameter; known: vocab\n"],
      [['--preset', 'huge'], `error: unknown preset 'huge'; ${file} has 'small'\n`],
    ];
    for (const [args, stderr] of cases) {
      const r = mtc(...args);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr, stderr);
    }
    const usage = mtc('--set', 'vocab');
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /expected name=value, got 'vocab'/);
    for (const bad of ['sixteen', '0x10', 'Infinity', '']) {
      const r = mtc('--set', `vocab=${bad}`);
      assert.equal(r.status, 2, `--set vocab=${bad}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`the value of vocab must be a decimal number (like 64, 3e-4 or 0.5), got '${bad}'`), r.stderr);
    }
    const ok = mtc('--preset', 'small');
    assert.equal(ok.status, 0, ok.stderr);
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
});

test('the caret stands under its column after tabs, wide characters and combining marks', () => {
  const line = '\tx = "\u65e5\u672c\u8a9e" + e\u0323 + y';
  registerSource('wide.mt', line + '\n');
  // y is column 19: a tab, 'x = "' (5 units), three wide characters (3 units, 6 columns), '" + ' (4),
  // e and a combining dot below (2 units, 1 column), ' + ' (3)
  const got = formatDiagnostic({ message: 'unknown name y', loc: { file: 'wide.mt', line: 1, col: 19, length: 1 } });
  assert.equal(got, ['wide.mt:1:19: error: unknown name y', `1 | ${line}`, '    \t' + ' '.repeat(5 + 6 + 4 + 1 + 3) + '^'].join('\n'));
  const wide = formatDiagnostic({ message: 'a wide name', loc: { file: 'wide.mt', line: 1, col: 7, length: 3 } });
  assert.equal(wide.split('\n')[2], '    \t' + ' '.repeat(5) + '^~~~~~', 'three wide characters are underlined six columns wide');
});
