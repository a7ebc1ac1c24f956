/** Prometheus text exposition → `name{labels}` → value (comments and blank lines skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/**
 * The value of the first series of `name` whose labels hold every one of `labels` (each written
 * as in the exposition, `server="alpha"`), from a processor's `/metrics`; 0 when there is none.
 */
export async function metricValue(adminUrl: string, name: string, ...labels: string[]): Promise<number> {
  const series = parseMetrics(await (await fetch(`${adminUrl}/metrics`)).text());
  for (const [key, value] of series) {
    if ((key === name || key.startsWith(`${name}{`)) && labels.every((l) => key.includes(l))) return value;
  }
  return 0;
}
