import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * Creates the processor's JSON-lines logger (stdout unless a destination is given), with
 * credentials redacted wherever they appear.
 */
export function createLogger(level: string = process.env['LOG_LEVEL'] ?? 'info', destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'mcp-gateway' },
    // The seed's log shape names the time field `timestamp`.
    timestamp: () => `,"timestamp":"${new Date().toISOString()}"`,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: ['headers.authorization', 'headers["x-api-key"]', '*.authorization', '*["x-api-key"]'],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
