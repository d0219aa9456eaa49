// The step attribution of test/bench/lib/profile.ts on a hand-made profile: a sample goes to the
// first step claiming a frame from the leaf up, through Node's plumbing; idle is not CPU. And perf's
// samples (test/bench/lib/perf.ts) shaped into such a profile.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { perfScriptToProfile } from './lib/perf.ts';
import { API_STEPS, attribute, GC, HELPER_THREADS, OPERATOR_STEPS, UNATTRIBUTED, WRITER_STEPS, type CpuProfile } from './lib/profile.ts';

const API = 'file:///app/controller/dataplane/api.ts';
const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 1 }, children });

describe('CPU profile attribution', () => {
  it('charges socket writes to their writer, JSON.parse to its caller, idle to nobody', () => {
    const profile: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 9, 10, 11, 12]),
        frame(2, 'processTicksAndRejections', 'node:internal/process/task_queues', [3]),
        frame(3, 'placeOrder', API, [4, 6, 13]),
        frame(4, 'sendCommand', 'file:///app/node_modules/ioredis/built/Redis.js', [5]),
        frame(5, 'Socket._writeGeneric', 'node:net', [14]),
        frame(6, 'send', API, [7]),
        frame(7, 'end', 'node:_http_outgoing', [8]),
        frame(8, 'writeUtf8String', ''),
        frame(9, '(idle)', ''),
        frame(10, '(garbage collector)', ''),
        frame(11, '(program)', ''),
        frame(12, 'parserOnIncoming', 'node:_http_server', [15]),
        frame(13, 'validateOrderBody', API, [16]),
        frame(14, 'writeBuffer', ''),
        frame(15, 'handle', API),
        frame(16, 'parse', ''),
      ],
      samples: [14, 8, 9, 10, 11, 3, 15, 16],
      timeDeltas: [1000, 2000, 50_000, 3000, 4000, 5000, 6000, 7000],
    };
    const cost = attribute(profile, API_STEPS);
    assert.equal(cost.idleMs, 50);
    assert.equal(cost.cpuMs, 28);
    assert.deepEqual(cost.steps, {
      'Redis: reserve + hand-off confirmation (ioredis + StockStore)': 1,
      'HTTP parse + respond (node:http)': 2,
      [GC]: 3,
      [UNATTRIBUTED]: 4,
      'purchase logic: sale window, fences, message JSON (placeOrder)': 5,
      'HTTP routing, counters (handle, count, observe)': 6,
      'request validation (JSON.parse, field checks)': 7,
    });
    // Self time by function, idle left out, most first; the file shortened to the project's path.
    assert.deepEqual(Object.entries(cost.top), [
      ['parse', 7],
      ['handle controller/dataplane/api.ts:2', 6],
      ['placeOrder controller/dataplane/api.ts:2', 5],
      ['(program)', 4],
      ['(garbage collector)', 3],
      ['writeUtf8String', 2],
      ['writeBuffer', 1],
    ]);
  });

  it('charges a shared layer to the caller that says which use it serves, else to the layer', () => {
    const NM = 'file:///app/node_modules/kafkajs/src';
    const profile: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 5, 7]),
        frame(2, 'fetch', `${NM}/consumer/fetchManager.js`, [3]),
        frame(3, 'sendRequest', `${NM}/network/connection.js`, [4]),
        frame(4, 'writeBuffer', ''),
        frame(5, 'processTicksAndRejections', 'node:internal/process/task_queues', [6]),
        frame(6, 'sendRequest', `${NM}/network/connection.js`, [9]),
        frame(7, 'handleBatch', 'file:///app/controller/dataplane/order-writer.ts', [8]),
        frame(8, 'sendRequest', `${NM}/network/connection.js`, [10]),
        frame(9, 'writeBuffer', ''),
        frame(10, 'writeBuffer', ''),
      ],
      samples: [4, 9, 10],
      timeDeltas: [1000, 2000, 4000],
    };
    assert.deepEqual(attribute(profile, WRITER_STEPS).steps, {
      'Kafka fetch + decode (kafkajs consumer)': 1,
      'Kafka protocol + network (kafkajs, shared)': 6,
    });
  });

  it('with a window, counts only the samples taken inside it (times on the profile clock)', () => {
    const profile: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 3]),
        frame(2, 'round', 'file:///app/controller/metrics/lag.ts'),
        frame(3, 'reconcile', 'file:///app/controller/operator/reconciler.ts'),
      ],
      startTime: 1_000_000,
      // Samples at 1.001 s, 1.003 s, 1.006 s and 1.010 s.
      samples: [2, 3, 2, 3],
      timeDeltas: [1000, 2000, 3000, 4000],
    };
    assert.deepEqual(attribute(profile, OPERATOR_STEPS, { fromUs: 1_002_000, toUs: 1_006_000 }).steps, {
      'reconcile: decide, children, status (operator/decide.ts, workloads.ts, reconciler.ts)': 2,
      'lag collector: rounds, snapshot, gauges (metrics/lag.ts)': 3,
    });
    assert.equal(attribute(profile, OPERATOR_STEPS).cpuMs, 10);
  });

  it("shapes perf's samples: kernel time to the JS caller, V8's collectors to GC, helper threads apart", () => {
    // `perf script -F comm,tid,period,ip,sym,dso` of pid 700, as perf prints it (leaf first).
    const text = [
      'MainThread   700    2000000 ',
      '\tffffffff81001 tcp_sendmsg_locked ([kernel.kallsyms])',
      '\tffffffff81002 ksys_write ([kernel.kallsyms])',
      '\tffffffff81003 do_syscall_64 ([kernel.kallsyms])',
      '\tffffffff81004 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])',
      '\t  d4ad7 __GI___libc_write (/usr/lib/x86_64-linux-gnu/libc.so.6)',
      '\t 6e930b node::StreamBase::WriteString<(node::encoding)1> (/usr/bin/node)',
      "\t7f01 JS:*'_writeRaw node:_http_outgoing:408:19 (/tmp/perf-700.map)",
      "\t7f02 JS:*'end node:_http_outgoing:1143:45 (/tmp/perf-700.map)",
      "\t7f03 JS:*'purchase file:///app/controller/dataplane/api.ts:408:25 (/tmp/perf-700.map)",
      '\t 405735 node::SpinEventLoopInternal (/usr/bin/node)',
      '',
      'MainThread   700    1000000 ',
      '\t 6e0001 v8::internal::Scavenger::ScavengeObject (/usr/bin/node)',
      '\t 6e0002 v8::internal::Heap::CollectGarbage (/usr/bin/node)',
      "\t7f03 JS:*'purchase file:///app/controller/dataplane/api.ts:408:25 (/tmp/perf-700.map)",
      '',
      'MainThread   700    3000000 ',
      "\t7f04 JS:+'toWritable /app/node_modules/ioredis/built/Command.js:110:15 (/tmp/perf-700.map)",
      "\t7f05 JS:* file:///app/controller/dataplane/stock.ts:390:20 (/tmp/perf-700.map)",
      '',
      'V8Worker   703    4000000 ',
      '\t 6e0003 v8::internal::compiler::PipelineImpl::Run (/usr/bin/node)',
      '\t 6e0004 start_thread (/usr/lib/x86_64-linux-gnu/libc.so.6)',
      '',
      'V8 DefaultWorke   704    5000000 ',
      '\tffffffff81005 clear_page_erms ([kernel.kallsyms])',
      '\tffffffff81006 asm_exc_page_fault ([kernel.kallsyms])',
      '\t 6e0005 v8::internal::ConcurrentMarking::RunMajor (/usr/bin/node)',
      '',
      'MainThread   700    6000000 ',
      '\t      0 [unknown] ([unknown])',
      '',
      'MainThread   700    7000000 ',
      '\tffffffff81007 tcp_recvmsg ([kernel.kallsyms])',
      '\tffffffff81008 ksys_read ([kernel.kallsyms])',
      '\tffffffff81003 do_syscall_64 ([kernel.kallsyms])',
      '\t  d4ad8 read (/usr/lib/x86_64-linux-gnu/libc.so.6)',
      '\t1619332 uv__read (/usr/bin/node)',
      '\t162278a uv__io_poll (/usr/bin/node)',
      '',
    ].join('\n');
    const profile = perfScriptToProfile(text, 700);
    assert.deepEqual(profile.timeDeltas, [2000, 1000, 3000, 4000, 5000, 6000, 7000]);
    const cost = attribute(profile, API_STEPS);
    assert.equal(cost.cpuMs, 28);
    assert.equal(cost.idleMs, 0);
    assert.deepEqual(cost.steps, {
      'HTTP parse + respond (node:http)': 2,
      [GC]: 1 + 5,
      'Redis: reserve + hand-off confirmation (ioredis + StockStore)': 3,
      [HELPER_THREADS]: 4,
      [UNATTRIBUTED]: 6,
      'socket reads and polling (kernel: read, epoll_pwait)': 7,
    });
    // The kernel part of a stack is one frame, named by how the kernel was entered.
    assert.deepEqual(Object.keys(cost.top).sort(), [
      '(garbage collector)',
      '(unknown)',
      'kernel: page fault',
      'kernel: read',
      'kernel: write',
      'toWritable ioredis/built/Command.js:110',
      'v8::internal::compiler::PipelineImpl::Run',
    ]);
    assert.equal(cost.top['kernel: write'], 2);
  });
});
