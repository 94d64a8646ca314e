import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addLabelToExposition } from './relabel.js';

const child = (value: number) => `# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total ${value}
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing{slot="0"} 1
`;

test('every sample gets the label, and families from several sources are merged under one HELP/TYPE', () => {
  const text = addLabelToExposition([{ model: 'a', text: child(5) }, { model: 'b"\\', text: child(7) }], 'model');
  assert.equal(
    text,
    [
      '# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.',
      '# TYPE llamacpp:prompt_tokens_total counter',
      'llamacpp:prompt_tokens_total{model="a"} 5',
      'llamacpp:prompt_tokens_total{model="b\\"\\\\"} 7',
      '# HELP llamacpp:requests_processing Number of requests processing.',
      '# TYPE llamacpp:requests_processing gauge',
      'llamacpp:requests_processing{model="a",slot="0"} 1',
      'llamacpp:requests_processing{model="b\\"\\\\",slot="0"} 1',
      '',
    ].join('\n'),
  );
});

test('histogram samples stay with their family; an existing label of the same name is kept', () => {
  const text = addLabelToExposition(
    [{ model: 'm', text: '# TYPE h histogram\nh_bucket{le="1"} 2\nh_sum 3\nh_count 2\nx{model="own"} 1\n' }],
    'model',
  );
  assert.equal(text, '# TYPE h histogram\nh_bucket{model="m",le="1"} 2\nh_sum{model="m"} 3\nh_count{model="m"} 2\nx{model="own"} 1\n');
  assert.equal(addLabelToExposition([], 'model'), '');
});
