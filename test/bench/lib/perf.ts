// On-CPU profiles of a running Node process with Linux perf, turned into the CpuProfile shape that
// profile.ts attributes to steps. Why perf and not V8's --cpu-prof: V8's sampler fires on wall-clock
// ticks of the JS thread, so a sample taken while the thread sits preempted inside a system call is
// charged to that call. On 2026-12-04 V8's profile put 22 µs per order on the order writer's
// `writeBuffer` and 21 µs per order on the API's `writeUtf8String`; perf's cpu-clock samples (CPU
// time only, kernel included) put 1.0 and 7.0 µs on those writes. perf also sees V8's helper
// threads (concurrent GC, compilers), which --cpu-prof leaves out.
//
// JS frames are named by `node --perf-basic-prof` (/tmp/perf-<pid>.map, read by `perf script`).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import type { CpuProfile } from './profile.ts';

const run = promisify(execFile);

/** Samples per second and per thread: ~1 % of a core at 999 Hz, fine enough for 10-s runs. */
const FREQUENCY = 999;

/** The node flag that makes JS frames nameable by perf. */
export const PERF_NODE_ARGS = ['--perf-basic-prof'];

/** Throws, saying what to do, when perf cannot sample here. */
export function checkPerf(): void {
  try {
    execFileSync('perf', ['record', '-q', '-e', 'cpu-clock', '-g', '-o', '/dev/null', '--', 'true'], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`--profile samples with Linux perf, which failed here (${String((err as Error).message).split('\n')[0]}): install it (apt-get install linux-perf) and run as root or with kernel.perf_event_paranoid ≤ 1`, { cause: err });
  }
}

/** perf record attached to one process, all its threads, until the process exits. */
export class PerfRecording {
  private readonly perf: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly pid: number;
  private readonly file: string;

  private constructor(pid: number, file: string) {
    this.pid = pid;
    this.file = file;
    this.perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', String(FREQUENCY), '-g', '-p', String(pid), '-o', file], { stdio: ['ignore', 'ignore', 'inherit'] });
    this.exited = new Promise((resolve) => this.perf.once('exit', () => resolve()));
  }

  static start(pid: number, file: string): PerfRecording {
    return new PerfRecording(pid, file);
  }

  /** After the process exited: perf's samples as a CpuProfile (perf ends with its target; else it is told to within 5 s). */
  async finish(): Promise<CpuProfile> {
    const stop = setTimeout(() => this.perf.kill('SIGINT'), 5000);
    await this.exited;
    clearTimeout(stop);
    const { stdout } = await run('perf', ['script', '-i', this.file, '-F', 'comm,tid,period,ip,sym,dso'], { maxBuffer: 1 << 30 });
    rmSync(`/tmp/perf-${this.pid}.map`, { force: true });
    return perfScriptToProfile(stdout, this.pid);
  }
}

// V8's collectors, on the main thread or its helpers: charged to garbage collection as --cpu-prof does.
const GC_FRAME = /^v8::internal::(Heap::|Scavenger|ScavengerCollector|MarkCompactCollector|MinorMarkSweep|MinorMS|ConcurrentMarking|IncrementalMarking|MarkingVisitor|MainMarkingVisitor|Sweeper|ArrayBufferSweeper|GCTracer|Evacuat|FullEvacuator|PageEvacuation|PointersUpdating|RememberedSet|heap::)/;
const JS_FRAME = /^(?:JS|Eval|Script):[*+^~]?'?(.*?)\s*(\S+):(\d+):(\d+)$/;
const FRAME_LINE = /^\s*[0-9a-f]+ (.*) \((.*)\)$/;

type Frame = CpuProfile['nodes'][number]['callFrame'];

/** The kernel part of a stack, leaf first, as one frame named by how it was entered. */
function kernelFrame(frames: string[]): Frame {
  const i = frames.indexOf('do_syscall_64');
  let how = 'other';
  if (i > 0) {
    let j = i - 1;
    if (frames[j] === 'x64_sys_call' && j > 0) j--;
    how = (frames[j] as string).replace(/^(__x64_sys_|__do_sys_|__se_sys_|ksys_|__sys_)/, '');
  } else if (frames.includes('asm_exc_page_fault')) how = 'page fault';
  else if (frames.some((f) => f.startsWith('asm_sysvec_') || f === 'asm_common_interrupt')) how = 'interrupt';
  return { functionName: `kernel: ${how}`, url: '', lineNumber: -1 };
}

function userFrame(sym: string): Frame {
  const js = JS_FRAME.exec(sym);
  if (js) return { functionName: js[1] as string, url: js[2] as string, lineNumber: Number(js[3]) - 1 };
  if (GC_FRAME.test(sym)) return { functionName: '(garbage collector)', url: '', lineNumber: -1 };
  return { functionName: sym === '[unknown]' ? '(unknown)' : sym, url: '', lineNumber: -1 };
}

/**
 * `perf script -F comm,tid,period,ip,sym,dso` (call chains, leaf first) → a CpuProfile whose
 * timeDeltas are the samples' CPU time. Threads other than the main one (tid = pid) hang under a
 * frame "(thread <name>)"; the kernel part of a stack becomes one frame ("kernel: write").
 */
export function perfScriptToProfile(text: string, pid: number): CpuProfile {
  const nodes: CpuProfile['nodes'] = [{ id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: [] }];
  const index = new Map<string, number>();
  const child = (parent: number, f: Frame): number => {
    const key = `${parent}\0${f.functionName}\0${f.url}\0${f.lineNumber}`;
    let id = index.get(key);
    if (id === undefined) {
      id = nodes.length + 1;
      nodes.push({ id, callFrame: f, children: [] });
      nodes[parent - 1]?.children?.push(id);
      index.set(key, id);
    }
    return id;
  };
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const head = lines.shift();
    if (head === undefined) continue;
    // "<comm, may hold spaces> <tid> <period>"
    const h = /^\s*(.*?)\s+(\d+)\s+(\d+)\s*$/.exec(head);
    if (!h) continue;
    const [, comm, tid, period] = h as unknown as [string, string, string, string];
    const kernel: string[] = [];
    const user: Frame[] = [];
    for (const l of lines) {
      const m = FRAME_LINE.exec(l);
      if (!m) continue;
      const [, sym, dso] = m as unknown as [string, string, string];
      if (dso === '[kernel.kallsyms]') kernel.push(sym);
      else user.push(userFrame(sym));
    }
    const stack = kernel.length > 0 ? [kernelFrame(kernel), ...user] : user;
    let at = 1;
    if (Number(tid) !== pid) at = child(at, { functionName: `(thread ${comm.trim()})`, url: '', lineNumber: -1 });
    for (let i = stack.length - 1; i >= 0; i--) at = child(at, stack[i] as Frame);
    samples.push(at);
    timeDeltas.push(Number(period) / 1000); // cpu-clock periods are nanoseconds
  }
  return { nodes, samples, timeDeltas };
}
