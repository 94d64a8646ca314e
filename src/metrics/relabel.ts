/**
 * Merges Prometheus text expositions from several sources (one per llama-server child) into one, adding a
 * label to every sample. The text format wants each metric family once, its `# HELP` / `# TYPE` lines
 * followed by all of its samples, so samples of the same family from different children are grouped.
 *
 * Hand-written: prom-client renders its own registry but does not parse text, and the format's sample line
 * (`name{labels} value [timestamp]`) is all that needs reading here.
 */

interface Family {
  help: string | undefined;
  type: string | undefined;
  samples: string[];
}

/** One exposition, all its samples labelled `label="<source>"`, families merged across sources. */
export function addLabelToExposition(sources: readonly { model: string; text: string }[], label: string): string {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let found = families.get(name);
    if (!found) {
      found = { help: undefined, type: undefined, samples: [] };
      families.set(name, found);
    }
    return found;
  };
  for (const source of sources) {
    let current: string | undefined;
    const pair = `${label}="${escapeLabelValue(source.model)}"`;
    for (const raw of source.text.split('\n')) {
      const line = raw.trimEnd();
      if (line === '') continue;
      const meta = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (meta) {
        current = meta[2]!;
        const entry = family(current);
        if (meta[1] === 'HELP') entry.help ??= line;
        else entry.type ??= line;
        continue;
      }
      if (line.startsWith('#')) continue;
      const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(.+)$/.exec(line);
      if (!sample) continue;
      const name = sample[1]!;
      const labels = sample[2];
      const owner = current !== undefined && name.startsWith(current) ? current : name;
      let labelled: string;
      if (labels === undefined || labels === '{}') labelled = `${name}{${pair}}`;
      else if (new RegExp(`[{,]\\s*${label}=`).test(labels)) labelled = `${name}${labels}`;
      else labelled = `${name}{${pair},${labels.slice(1)}`;
      family(owner).samples.push(`${labelled} ${sample[3]}`);
    }
  }
  const out: string[] = [];
  for (const entry of families.values()) {
    if (entry.samples.length === 0) continue;
    if (entry.help) out.push(entry.help);
    if (entry.type) out.push(entry.type);
    out.push(...entry.samples);
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/** A label value as the text format writes it: backslash, double quote and newline escaped. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
