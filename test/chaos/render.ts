// Renders the chaos runs recorded in test/chaos/results.jsonl (one JSON line per `npm run chaos`)
// into the `chaos` block of test/bench/RESULTS.md (`<!-- generated:chaos -->` … `<!-- /generated:chaos -->`),
// appended at the end the first time, rewritten in place after that; nothing else in the file is touched.
// `node test/chaos/render.ts [--min-minutes M]`: the latest run of at least M minutes (default 10) in
// full, every run as a row.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultOut, type ChaosResult } from './run.ts';

const resultsMd = fileURLToPath(new URL('../bench/RESULTS.md', import.meta.url));

export function renderChaos(runs: ChaosResult[], minMinutes: number): string {
  const full = [...runs].reverse().find((r) => r.minutes >= minMinutes) ?? runs.at(-1);
  const lines = ['<!-- generated:chaos -->', '<!-- written by `node test/chaos/render.ts` from test/chaos/results.jsonl (npm run chaos): do not edit by hand -->', '## chaos', ''];
  if (!full) return [...lines, 'No chaos run recorded yet.', '<!-- /generated:chaos -->'].join('\n');
  lines.push(
    `\`npm run chaos -- --minutes ${full.minutes} --seed ${full.seed}\` (mode ${full.mode}, commit ${full.commit}, ${full.at}, ${full.durationS} s in all): ` +
      `buyers and payers against the real worker processes, a 3 s timeout bucket, faults injected at random in seeded order, then quiet and the invariant checker (test/support/checker.ts).`,
    '',
    '| fault | injected |',
    '| --- | ---: |',
    ...Object.entries(full.faultsByKind).sort().map(([k, n]) => `| ${k} | ${n} |`),
    `| **total** | **${full.faults.length}** |`,
    '',
    `Purchase attempts ${full.attempts} (answers ${Object.entries(full.answers).map(([s, n]) => `${s === '0' ? 'no answer (API down)' : s}: ${n}`).join(', ')}); ` +
      `**orders acknowledged (202) ${full.acknowledged}**, paid (200 PAID) ${full.paid}; rows in MySQL ${full.summary.rows ?? '?'} ` +
      `(UNPAID ${full.summary.unpaid ?? '?'}, PAID ${full.summary.paid ?? '?'}, CLOSED ${full.summary.closed ?? '?'}); dead letters ${full.summary.deadLetters ?? '?'}.` +
      (full.loadEndedEarly ? ' The buyers used up their budget before the minutes were over: the last faults ran without load.' : full.loadEndedEarly === false ? ' The load lasted the whole run.' : ''),
    '',
    `**Violations: ${full.violations.length}**${full.violations.length ? '' : ' (every rule of the checker held).'}`,
  );
  if (full.violations.length) lines.push('', ...full.violations.map((v) => `- ${v.replace(/\|/g, '\\|')}`));
  if (full.faultErrors?.length) lines.push('', `Faults the harness could not complete (${full.faultErrors.length}):`, '', ...full.faultErrors.map((v) => `- ${v}`));
  lines.push('', 'Order of faults (seconds from start):', '', full.faults.map((f) => `${f.at}s ${f.kind}`).join(' · ') || '(none)');
  if (runs.length > 1) {
    lines.push('', 'All recorded runs:', '', '| when | commit | minutes | seed | mode | faults | acknowledged | violations |', '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |');
    for (const r of runs) lines.push(`| ${r.at} | ${r.commit} | ${r.minutes} | ${r.seed} | ${r.mode} | ${r.faults.length} | ${r.acknowledged} | ${r.violations.length} |`);
  }
  lines.push('<!-- /generated:chaos -->');
  return lines.join('\n');
}

function main(): void {
  const { values } = parseArgs({ options: { 'min-minutes': { type: 'string', default: '10' }, in: { type: 'string', default: defaultOut } } });
  const runs = existsSync(values.in) ? readFileSync(values.in, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ChaosResult) : [];
  const block = renderChaos(runs, Number(values['min-minutes']));
  const md = readFileSync(resultsMd, 'utf8');
  const re = /<!-- generated:chaos -->[\s\S]*?<!-- \/generated:chaos -->/;
  writeFileSync(resultsMd, re.test(md) ? md.replace(re, block) : `${md.replace(/\n*$/, '\n\n')}${block}\n`);
  process.stdout.write(`${block}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
