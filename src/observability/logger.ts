import { pino, type Logger } from 'pino';

/** Creates the processor's JSON-lines logger (stdout), with credentials redacted wherever they appear. */
export function createLogger(level: string = process.env['LOG_LEVEL'] ?? 'info'): Logger {
  return pino({
    level,
    base: { service: 'mcp-gateway' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: ['headers.authorization', 'headers["x-api-key"]', '*.authorization', '*["x-api-key"]'],
      censor: '[redacted]',
    },
  });
}
