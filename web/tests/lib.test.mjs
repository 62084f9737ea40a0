// Unit checks of the page's pure helpers (node --test web/tests/lib.test.mjs).

import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  ApiError,
  checkPartSize,
  describePolicy,
  formatSize,
  methodFor,
  parseProblem,
  parseS3Error,
  partSizeFor,
  readHash,
  stillValid,
  toHex,
  uploadErrorMessage,
  usesMultipart,
} from '../src/lib.js'

test('the token and the API base come from the address fragment', () => {
  assert.deepEqual(readHash('#token=abc.def.ghi'), { token: 'abc.def.ghi', api: null })
  assert.deepEqual(readHash('#token=t&api=http://127.0.0.1:9'), { token: 't', api: 'http://127.0.0.1:9' })
  assert.equal(readHash('').token, null)
  assert.equal(readHash('#token=').token, null)
  assert.equal(readHash('#other=1').token, null)
})

test('a problem+json body gives its detail first, then title and status', () => {
  const body = JSON.stringify({
    type: 'https://airlock.dev/problems/type-not-allowed',
    title: 'Content type not allowed',
    status: 415,
    detail: 'purpose avatar does not accept text/html',
    code: 'type-not-allowed',
  })
  const problem = parseProblem(415, 'application/problem+json', body)
  assert.equal(problem.code, 'type-not-allowed')
  const err = new ApiError({ ...problem, method: 'POST', path: '/uploads' })
  assert.equal(
    err.message,
    'purpose avatar does not accept text/html — Content type not allowed, HTTP 415 (POST /uploads)',
  )
  assert.equal(err.source.status, 415)
  assert.equal(uploadErrorMessage(err), err.message)
})

test('an error body that is not a problem is shown by its first line', () => {
  const problem = parseProblem(502, 'text/plain', 'bad gateway\nmore')
  assert.deepEqual(problem, { status: 502, code: null, title: null, detail: 'bad gateway' })
  assert.equal(parseProblem(500, 'application/json', '{not json').detail, '{not json')
  assert.equal(parseProblem(500, null, '').detail, null)
})

test("the bucket's XML error is named in the upload error", () => {
  const xml = '<?xml version="1.0"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature does not match</Message></Error>'
  assert.deepEqual(parseS3Error(xml), {
    code: 'SignatureDoesNotMatch',
    message: 'The request signature does not match',
  })
  assert.equal(parseS3Error('plain'), null)
  const err = Object.assign(new Error('Non 2xx'), { source: { status: 403, responseText: xml } })
  assert.equal(
    uploadErrorMessage(err),
    'the bucket refused the upload: SignatureDoesNotMatch: The request signature does not match (HTTP 403)',
  )
  const network = Object.assign(new Error('Unknown error'), { source: { status: 0 } })
  assert.match(uploadErrorMessage(network), /could not be reached/)
})

test('multipart from the threshold on, otherwise the chosen single-request method', () => {
  const threshold = 100 * 1024 * 1024
  assert.equal(usesMultipart(threshold - 1, threshold), false)
  assert.equal(usesMultipart(threshold, threshold), true)
  assert.equal(methodFor(10, threshold, 'post'), 'post')
  assert.equal(methodFor(10, threshold, 'put'), 'put')
  assert.equal(methodFor(10, threshold, 'anything'), 'put')
  assert.equal(methodFor(threshold, threshold, 'post'), 'multipart')
})

test('parts are cut as the server cuts them: its part size, grown past 10,000 parts', () => {
  const mib = 1024 * 1024
  assert.equal(partSizeFor(200 * mib, 8 * mib), 8 * mib)
  assert.equal(partSizeFor(10_000 * 8 * mib, 8 * mib), 8 * mib)
  // One byte more would need 10,001 parts of 8 MiB: the part grows to 9 MiB.
  assert.equal(partSizeFor(10_000 * 8 * mib + 1, 8 * mib), 9 * mib)
  assert.equal(partSizeFor(1, 8 * mib), 8 * mib)
})

test('a part cut to another size than signed is refused before it is sent', () => {
  assert.doesNotThrow(() => checkPartSize(1, 8, 8))
  assert.doesNotThrow(() => checkPartSize(1, 8, undefined))
  assert.throws(() => checkPartSize(3, 7, 8), /part 3 is 7 bytes here but was signed for 8 bytes/)
})

test('a signed URL is reused only while it has a margin left', () => {
  const now = Date.parse('2026-12-02T10:00:00Z')
  assert.equal(stillValid('2026-12-02T10:05:00Z', now), true)
  assert.equal(stillValid('2026-12-02T10:00:20Z', now), false)
  assert.equal(stillValid('2026-12-02T09:59:00Z', now), false)
  assert.equal(stillValid(undefined, now), true)
})

test('sizes, digests and policies are written for people', () => {
  assert.equal(formatSize(512), '512 bytes')
  assert.equal(formatSize(200 * 1024 * 1024), '200.0 MiB')
  assert.equal(formatSize(1536), '1.5 KiB')
  assert.equal(toHex(new Uint8Array([0, 15, 255]).buffer), '000fff')
  assert.equal(
    describePolicy({ allowedTypes: ['image/jpeg', 'image/png'], maxSize: 10 * 1024 * 1024 }),
    'Accepts image/jpeg, image/png, up to 10.0 MiB.',
  )
})
