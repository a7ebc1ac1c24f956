/** What the benchmark ran on, for the report and the JSON results. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { findEnvoyBinary } from '../support/envoy.js';

export interface MachineInfo {
  readonly cpuModel: string;
  /** Logical CPUs the kernel reports. */
  readonly cpus: number;
  /** CPUs this process may run on (cgroup/affinity aware). */
  readonly availableParallelism: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly envoy: string;
  /** 1-minute load average when the bench started (a busy machine skews every figure). */
  readonly loadAverage1m: number;
  readonly gitCommit: string;
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1] !== undefined) return m[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return '';
  }
}

function envoyVersion(): string {
  let binary: string;
  try {
    binary = findEnvoyBinary();
  } catch {
    return 'not found';
  }
  const out = run(binary, ['--version']);
  const m = /version:\s*\S+?\/([0-9][^/\s]*)\/\S+/.exec(out);
  return m?.[1] ?? (out.split('\n').find((l) => l.includes('version')) ?? 'unknown').trim();
}

export function machineInfo(): MachineInfo {
  const commit = run('git', ['rev-parse', '--short', 'HEAD']);
  const dirty = commit !== '' && run('git', ['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    cpuModel: cpuModel(),
    cpus: cpus().length,
    availableParallelism: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    envoy: envoyVersion(),
    loadAverage1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    gitCommit: commit === '' ? 'unknown' : `${commit}${dirty ? '+dirty' : ''}`,
  };
}
