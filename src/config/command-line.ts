/**
 * The `iris serve` command line, derived from the settings table: parseArgs options and the `--help` text.
 */
import type { ParseArgsConfig } from 'node:util';
import { allSettings, type PlacedSetting } from './settings.js';

type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** parseArgs options for every flag of the table, plus `--help`. */
export function serveFlagOptions(): FlagOptions {
  const options: FlagOptions = { help: { type: 'boolean', short: 'h' } };
  for (const { setting } of allSettings()) {
    if (setting.flag === undefined) continue;
    options[setting.flag] =
      setting.input === 'switch' ? { type: 'boolean' } : { type: 'string', ...(setting.input === 'list' ? { multiple: true } : {}) };
  }
  return options;
}

const FLAG_COLUMN = 25;
const WIDTH = 116;

/** The `iris serve --help` text: one entry per flag, then the variables that have no flag. */
export function serveHelpText(): string {
  const settings = allSettings();
  const lines = [
    'Usage: iris serve [options]',
    '',
    'Serve vision-language models behind an OpenAI-compatible API.',
    '',
    'Options:',
    ...settings.filter(({ setting }) => setting.flag !== undefined).flatMap(flagLines),
  ];
  const envOnly = settings.filter(({ setting }) => setting.flag === undefined && setting.env !== undefined);
  if (envOnly.length > 0) {
    lines.push('', 'Environment:', ...envOnly.flatMap(({ setting }) => wrap(`  ${setting.env}`.padEnd(FLAG_COLUMN) + ` ${describe(setting, false)}`)));
  }
  lines.push('', 'Every setting can also be written in the YAML config file (--config), in snake_case.');
  return `${lines.join('\n')}\n`;
}

function flagLines({ setting }: PlacedSetting): string[] {
  const head = `  --${setting.flag}${setting.placeholder ? ` ${setting.placeholder}` : ''}`;
  const text = describe(setting, true);
  return wrap(head.length >= FLAG_COLUMN ? `${head} ${text}` : `${head.padEnd(FLAG_COLUMN)} ${text}`);
}

function describe(setting: PlacedSetting['setting'], withEnv: boolean): string {
  const notes: string[] = [];
  if (withEnv && setting.env !== undefined) notes.push(`env ${setting.env}${setting.input === 'list' ? ', comma-separated' : ''}`);
  const fallback = setting.defaultText ?? defaultText(setting.default);
  if (fallback !== undefined) notes.push(`default ${fallback}`);
  return notes.length > 0 ? `${setting.help} (${notes.join(', ')})` : setting.help;
}

function defaultText(value: unknown): string | undefined {
  if (value === undefined || value === false || (Array.isArray(value) && value.length === 0)) return undefined;
  return String(value);
}

/** Breaks a long entry into lines, continuing under the description column. */
function wrap(text: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/(?<=\S) (?=\S)/)) {
    if (line.length > 0 && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = `${' '.repeat(FLAG_COLUMN + 1)}${word.trimStart()}`;
    } else {
      line = line.length > 0 ? `${line} ${word}` : word;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines;
}
