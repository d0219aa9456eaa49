// Generated blocks in Markdown files: `<!-- generated:NAME -->` … `<!-- /generated:NAME -->`.
// A report replaces only its own blocks, so several generators (seckill and timeouts, chaos,
// operator benchmarks) share one RESULTS.md, and hand-written text outside the blocks stays.

/** Replaces the block NAME in text; appends it when absent, or throws when appendIfMissing is false. */
export function replaceBlock(text: string, name: string, body: string, appendIfMissing: boolean): string {
  const begin = `<!-- generated:${name} -->`;
  const end = `<!-- /generated:${name} -->`;
  const block = `${begin}\n<!-- written by \`npm run bench:report\` from test/bench/results/*.jsonl: do not edit by hand -->\n${body.trim()}\n${end}`;
  const i = text.indexOf(begin);
  const j = i < 0 ? -1 : text.indexOf(end, i);
  if (i >= 0 && j > i) return text.slice(0, i) + block + text.slice(j + end.length);
  if (i >= 0) throw new Error(`${begin} has no ${end}`);
  if (!appendIfMissing) throw new Error(`no ${begin} … ${end} block to replace`);
  return `${text.trimEnd()}\n\n${block}\n`;
}
