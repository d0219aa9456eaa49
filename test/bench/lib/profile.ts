// Where a process's CPU goes, step by step, from a CPU profile (`node --cpu-prof`, or perf's samples
// shaped alike by perf.ts). Each sample
// is charged to the first step that claims a frame of its stack, walked from the leaf up; frames of
// Node's plumbing (streams, sockets, timers, promise queues) and native leaves claim nothing, so a
// socket write is charged to whoever wrote (ioredis, kafkajs, the HTTP response), and JSON.parse to
// the function that parsed. Used by `npm run bench:seckill -- --profile` (docs in test/bench/RESULTS.md).

/** The parts of a .cpuprofile file used here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  /** Microseconds on the monotonic clock of process.hrtime (V8's and libuv's clock on Linux). */
  startTime?: number;
}

export interface StepRule {
  step: string;
  /** Matched against the frame's URL (file path or node: module). */
  url?: RegExp;
  /** Matched against the frame's function name. */
  fn?: RegExp;
  /**
   * A shared layer (e.g. kafkajs's network code, used by its producer and its consumer alike): the
   * walk goes on up, and one of these steps claiming a caller takes the sample; otherwise this step does.
   */
  refinedBy?: string[];
}

/** Samples no step claimed and that are not idle. */
export const UNATTRIBUTED = 'other (V8 and Node internals, unattributed)';
export const STARTUP = 'start-up (module loading, compilation)';
export const GC = 'garbage collection';
/** perf.ts hangs the samples of threads other than the main one under "(thread <name>)". */
export const HELPER_THREADS = "V8's and libuv's helper threads (compilers, thread pool)";

// Order matters: the first rule matching a frame wins for that frame.
const COMMON: StepRule[] = [
  { step: STARTUP, url: /node:internal\/modules\/|node:internal\/deps\/amaro|node:internal\/bootstrap/ },
  { step: STARTUP, fn: /^(compileSourceTextModule|wrapSafe|compileForInternalLoader|readFileUtf8)$/ },
  { step: 'metrics (prom-client)', url: /prom-client\/|controller\/metrics\// },
  { step: 'logging (pino)', url: /\/pino\/|\/pino-|sonic-boom/ },
  { step: HELPER_THREADS, fn: /^\(thread / },
  // perf only (kernel frames): libuv's reads and waits, which no JS frame calls.
  { step: 'socket reads and polling (kernel: read, epoll_pwait)', fn: /^kernel: (read|readv|recvfrom|recvmsg|epoll_pwait|epoll_wait)$/ },
];

/** Steps of the API process on the purchase path. */
export const API_STEPS: StepRule[] = [
  ...COMMON,
  { step: 'Kafka hand-off: batching, encoding, produce (kafkajs + gateway)', url: /kafkajs\/|controller\/infra\/kafka\.ts/ },
  { step: 'Redis: reserve + hand-off confirmation (ioredis + StockStore)', url: /ioredis\/|redis-parser|standard-as-callback|cluster-key-slot|denque|controller\/dataplane\/stock\.ts/ },
  { step: 'request validation (JSON.parse, field checks)', fn: /^(validateOrderBody|isId|codePoints)$/ },
  { step: 'request body read', fn: /^readBody$/ },
  { step: 'order id (UUIDv7)', url: /controller\/dataplane\/order-id\.ts/ },
  { step: 'purchase logic: sale window, fences, message JSON (placeOrder)', fn: /^(placeOrder|orderFromBody|purchase)$/ },
  { step: 'HTTP routing, counters (handle, count, observe)', url: /controller\/dataplane\/api\.ts/ },
  { step: 'HTTP parse + respond (node:http)', url: /^node:_http_|^node:internal\/http/ },
  { step: 'HTTP parse + respond (node:http)', fn: /^parserOn/ },
];

const KAFKA_FETCH = 'Kafka fetch + decode (kafkajs consumer)';
const KAFKA_PRODUCE = 'Kafka produce of timeout messages (kafkajs producer)';
const KAFKA_COMMIT = 'Kafka offset commit (kafkajs)';

/** Steps of the order writer's loop. */
export const WRITER_STEPS: StepRule[] = [
  ...COMMON,
  { step: KAFKA_FETCH, url: /kafkajs\/src\/(consumer|protocol\/requests\/fetch)/ },
  { step: KAFKA_PRODUCE, url: /kafkajs\/src\/(producer|protocol\/requests\/produce)/ },
  { step: KAFKA_COMMIT, url: /kafkajs\/src\/protocol\/requests\/offsetCommit/ },
  { step: 'Kafka protocol + network (kafkajs, shared)', url: /kafkajs\/|controller\/infra\/kafka\.ts/, refinedBy: [KAFKA_FETCH, KAFKA_PRODUCE, KAFKA_COMMIT] },
  { step: 'MySQL insert (mysql2)', url: /mysql2\/|sqlstring|lru-cache|controller\/infra\/mysql\.ts/ },
  { step: 'Redis claim (ioredis + StockStore)', url: /ioredis\/|redis-parser|standard-as-callback|denque|controller\/dataplane\/stock\.ts/ },
  { step: 'order message parsing + checks', url: /controller\/dataplane\/messages\.ts/ },
  { step: 'writer loop (claim/insert/produce/commit logic)', url: /controller\/dataplane\/order-writer\.ts/ },
  { step: 'metrics endpoint polled by the benchmark (node:http)', url: /^node:_http_|controller\/dataplane\/worker-http\.ts/ },
];

/** Steps of the operator (bench:operator --profile; read for the idle window). */
export const OPERATOR_STEPS: StepRule[] = [
  // Before COMMON, whose metrics rule would claim it.
  { step: 'lag collector: rounds, snapshot, gauges (metrics/lag.ts)', url: /controller\/metrics\/lag\.ts/ },
  ...COMMON,
  { step: 'Kafka admin requests (kafkajs + gateway)', url: /kafkajs\/|controller\/infra\/kafka\.ts/ },
  { step: 'Kubernetes API client, watches, leader lease (client-node, kube.ts, informer.ts, leader.ts)', url: /@kubernetes\/client-node|controller\/operator\/(kube|informer|leader)\.ts/ },
  { step: 'MySQL (mysql2)', url: /mysql2\/|sqlstring|lru-cache|controller\/infra\/mysql\.ts/ },
  { step: 'Redis (ioredis + StockStore)', url: /ioredis\/|redis-parser|standard-as-callback|denque|controller\/dataplane\/stock\.ts/ },
  { step: 'provisioning checks (dataplane/provision.ts)', url: /controller\/dataplane\/provision\.ts/ },
  { step: 'reconcile: decide, children, status (operator/decide.ts, workloads.ts, reconciler.ts)', url: /controller\/operator\/(decide|workloads|reconciler|scaling)\.ts/ },
  { step: 'work queue, events (operator/workqueue.ts, events.ts, main.ts)', url: /controller\/operator\/(workqueue|events|main)\.ts/ },
  { step: 'metrics endpoint (node:http)', url: /^node:_http_|^node:internal\/http/ },
  { step: 'TLS + sockets to the apiserver (node:tls)', url: /^node:(_tls|tls|internal\/tls)/ },
];

// Frames that only carry work on behalf of their callers.
const PLUMBING = /^node:(net|events|buffer|stream|internal\/(streams|stream_base_commons|process\/task_queues|timers|buffer|util|async_hooks|event_target|errors|validators|url|perf)|timers|util|string_decoder)/;

export interface StepCost {
  /** CPU ms per step (idle excluded). */
  steps: Record<string, number>;
  /** CPU ms in all (idle excluded). */
  cpuMs: number;
  idleMs: number;
  /** The functions with the most self time, "name file:line" → CPU ms (idle excluded), most first. */
  top: Record<string, number>;
}

const TOP_FRAMES = 15;

/** "name file:line" of a frame, the file shortened to what follows node_modules/ or the project root. */
function frameLabel(f: CpuProfile['nodes'][number]['callFrame']): string {
  const file = f.url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '').replace(/^.*\/(controller|test)\//, '$1/');
  return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
}

/**
 * Charges every sample of the profile to a step (see the file comment); with `window` (µs on
 * process.hrtime's clock, e.g. `process.hrtime.bigint() / 1000n` read by the benchmark), only the
 * samples taken inside it.
 */
export function attribute(profile: CpuProfile, rules: StepRule[], window?: { fromUs: number; toUs: number }): StepCost {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stepOf = new Map<number, string>();
  const claim = (id: number): string => {
    const known = stepOf.get(id);
    if (known !== undefined) return known;
    const f = (byId.get(id) as CpuProfile['nodes'][number]).callFrame;
    let rule: StepRule | undefined;
    let step: string | undefined;
    if (f.functionName === '(garbage collector)') step = GC;
    else if (f.functionName === '(idle)') step = '(idle)';
    else if (f.url !== '' && !PLUMBING.test(f.url)) rule = rules.find((r) => (!r.url || r.url.test(f.url)) && (!r.fn || r.fn.test(f.functionName)));
    else if (f.url === '') rule = rules.find((r) => !r.url && r.fn?.test(f.functionName));
    if (rule && !rule.refinedBy) step = rule.step;
    if (step === undefined) {
      const up = parent.get(id);
      step = up === undefined ? UNATTRIBUTED : claim(up);
      if (rule?.refinedBy && !rule.refinedBy.includes(step)) step = rule.step;
    }
    stepOf.set(id, step);
    return step;
  };
  const steps: Record<string, number> = {};
  const self = new Map<string, number>();
  let cpuMs = 0;
  let idleMs = 0;
  let at = profile.startTime ?? 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    const ms = delta / 1000;
    const step = claim(id);
    if (step === '(idle)') idleMs += ms;
    else {
      steps[step] = (steps[step] ?? 0) + ms;
      cpuMs += ms;
      const label = frameLabel((byId.get(id) as CpuProfile['nodes'][number]).callFrame);
      self.set(label, (self.get(label) ?? 0) + ms);
    }
  });
  const top = Object.fromEntries([...self].sort((a, b) => b[1] - a[1]).slice(0, TOP_FRAMES));
  return { steps, cpuMs, idleMs, top };
}
