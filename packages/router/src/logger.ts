import type { LogEvent, Logger } from '@postern/core';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
/** `text`: one line for people; `json`: one JSON object a line for log pipelines. */
export type LogFormat = 'text' | 'json';
const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** Errors, bigints and other values JSON cannot carry become strings, never a thrown log call. */
function jsonValue(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64url');
  return v;
}

/** A field as text: strings quoted, objects and arrays as JSON, the rest as String() does. */
function textValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'object' && v !== null) return JSON.stringify(v, (_k, x: unknown) => jsonValue(x));
  return String(v);
}

/**
 * One line per event on stderr, written synchronously (a line logged just before an exit is not
 * lost). Text: a timestamp, the level, the message, then key=value fields. JSON:
 * `{"time","level","event","msg","name"?,...fields}`; `event` is the stable name (LOG_EVENTS),
 * `name` the prefix without its colon (e.g. "gateway"). A field cannot overwrite those keys.
 */
export function createConsoleLogger(
  level: LogLevel = 'info',
  prefix = '',
  write: (line: string) => void = (l) => process.stderr.write(l),
  format: LogFormat = 'text',
): Logger {
  const min = rank[level];
  const name = prefix.replace(/[:\s]+$/, '');
  const text = (lvl: LogLevel, _event: LogEvent, msg: string, fields?: Record<string, unknown>): string => {
    let line = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${prefix}${msg}`;
    if (fields !== undefined) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        line += ` ${k}=${textValue(v)}`;
      }
    }
    return line;
  };
  const json = (lvl: LogLevel, event: LogEvent, msg: string, fields?: Record<string, unknown>): string => {
    const o: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, event, msg };
    if (name !== '') o['name'] = name;
    if (fields !== undefined) for (const [k, v] of Object.entries(fields)) if (!(k in o)) o[k] = v;
    return JSON.stringify(o, (_k, v: unknown) => jsonValue(v));
  };
  const render = format === 'json' ? json : text;
  const emit = (lvl: LogLevel, event: LogEvent, msg: string, fields?: Record<string, unknown>): void => {
    if (rank[lvl] < min) return;
    write(`${render(lvl, event, msg, fields)}\n`);
  };
  return {
    debug: (e, m, f) => emit('debug', e, m, f),
    info: (e, m, f) => emit('info', e, m, f),
    warn: (e, m, f) => emit('warn', e, m, f),
    error: (e, m, f) => emit('error', e, m, f),
  };
}
