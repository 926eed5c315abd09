import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, recordingClient } from './client.mjs';

const MODEL = 'text-embedding-3-small';

function cosine(a, b) {
  let dot = 0;
  for (let i = 0; i < a.length; i += 1) dot += a[i] * b[i];
  return dot;
}

test('embeddings: the SDK asks for base64 and hands back the same floats', async () => {
  const { client: openai, sent } = recordingClient();
  const input = ['A cat sits on the mat.', 'A kitten rests on the rug.', 'Stock markets fell sharply.'];
  const response = await openai.embeddings.create({ model: MODEL, input });
  assert.equal(sent.at(-1).encoding_format, 'base64');
  assert.equal(response.data.length, 3);
  const vectors = response.data.map((item) => item.embedding);
  for (const [index, vector] of vectors.entries()) {
    assert.equal(response.data[index].index, index);
    assert.ok(Array.isArray(vector) && vector.every((x) => typeof x === 'number'));
    assert.ok(Math.abs(cosine(vector, vector) - 1) < 1e-3);
  }
  assert.ok(cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]));
  assert.ok(response.usage.prompt_tokens > 0);

  const floats = await openai.embeddings.create({ model: MODEL, input, encoding_format: 'float' });
  assert.equal(sent.at(-1).encoding_format, 'float');
  floats.data.forEach((item, index) => {
    item.embedding.forEach((x, i) => assert.ok(Math.abs(x - vectors[index][i]) < 1e-6));
  });
});

test('moderations: a threat is flagged, a pleasantry is not', async () => {
  const openai = client();
  const response = await openai.moderations.create({
    model: 'omni-moderation-latest',
    input: ['I am going to find where you live and beat you until you stop breathing.', 'What a lovely sunny day.'],
  });
  assert.match(response.id, /^modr-/);
  const [threat, pleasant] = response.results;
  assert.equal(threat.flagged, true);
  assert.equal(threat.categories['harassment/threatening'], true);
  assert.equal(pleasant.flagged, false);
  for (const score of Object.values(pleasant.category_scores)) assert.ok(score >= 0 && score <= 1);
});
