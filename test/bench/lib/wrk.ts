// One wrk run POSTing purchase bodies, with the latency distribution read from wrk's own histogram
// (a `done` callback prints its percentiles as JSON), optionally pinned to a core. The same callback
// reads wrk's own CPU time from /proc/self/stat: the load generator shares the machine's cores with
// the pipeline, so the CPU budgets count it.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pinned, TICKS } from './system.ts';

const run = promisify(execFile);

/** Percentiles read from wrk's histogram: dense where latency curves bend (the tail). */
export const CURVE_PERCENTILES = [0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 98, 99, 99.5, 99.7, 99.9, 99.95, 99.99, 100];

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Answers other than 2xx/3xx. */
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** [percentile, ms] pairs at CURVE_PERCENTILES. */
  curve: [number, number][];
  /** wrk's own CPU (utime + stime of all its threads, whole life: start-up is a few ms), seconds. */
  cpuSeconds: number;
}

export interface WrkOptions {
  name: string;
  workDir: string;
  url: string;
  path: string;
  skuId: string;
  /** userId prefix; userIds are prefix + counter (mod `users` when > 0). */
  prefix: string;
  users: number;
  connections: number;
  seconds: number;
  threads: number;
  core: number | null;
}

const MARK = 'WRK-JSON ';

export async function wrk(o: WrkOptions): Promise<WrkResult> {
  const script = join(o.workDir, `${o.name}.lua`);
  // One thread per wrk instance keeps the counter (and so the buyers) distinct across requests.
  writeFileSync(
    script,
    `local counter = 0
request = function()
  counter = counter + 1
  local n = counter
  if ${o.users} > 0 then n = counter % ${o.users} end
  return wrk.format("POST", "${o.path}", {["Content-Type"] = "application/json"}, '{"userId":"${o.prefix}' .. n .. '","skuId":"${o.skuId}"}')
end
done = function(summary, latency, requests)
  -- utime and stime are fields 14 and 15, counted after the command name's closing paren.
  local f = io.open("/proc/self/stat")
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for w in stat:match(".*%) (.*)"):gmatch("%S+") do table.insert(fields, w) end
  local ticks = tonumber(fields[12]) + tonumber(fields[13])
  local ps = {}
  for _, p in ipairs({${CURVE_PERCENTILES.join(', ')}}) do
    local v
    if p == 0 then v = latency.min elseif p == 100 then v = latency.max else v = latency:percentile(p) end
    table.insert(ps, string.format("[%s,%.3f]", p, v / 1000))
  end
  io.write(string.format('${MARK}{"requests":%d,"durationUs":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"meanMs":%.3f,"cpuTicks":%d,"curve":[%s]}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency.mean / 1000, ticks, table.concat(ps, ",")))
end
`,
  );
  const [cmd, args] = pinned(o.core, ['wrk', `-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, '--timeout', '10s', '-s', script, `${o.url}${o.path}`]);
  const { stdout } = await run(cmd, args, { maxBuffer: 1 << 20, timeout: (o.seconds + 60) * 1000 });
  const line = stdout.split('\n').find((l) => l.startsWith(MARK));
  if (!line) throw new Error(`cannot read wrk output:\n${stdout}`);
  const j = JSON.parse(line.slice(MARK.length)) as {
    requests: number; durationUs: number; status: number; connect: number; read: number; write: number; timeout: number; meanMs: number; cpuTicks: number; curve: [number, number][];
  };
  const at = (p: number) => j.curve.find(([q]) => q === p)?.[1] ?? NaN;
  const seconds = j.durationUs / 1e6;
  return {
    requests: j.requests,
    seconds,
    rps: j.requests / seconds,
    non2xx: j.status,
    socketErrors: { connect: j.connect, read: j.read, write: j.write, timeout: j.timeout },
    latencyMs: { p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: at(100), mean: j.meanMs },
    curve: j.curve,
    cpuSeconds: j.cpuTicks / TICKS,
  };
}
