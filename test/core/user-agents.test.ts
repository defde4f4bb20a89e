import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deviceOf, MAX_DEVICE_LENGTH } from '../../src/core/user-agents.ts';

describe('the browser and system a session is listed with', () => {
  it('names the major browsers and systems from their User-Agent headers', () => {
    const cases: [string, string][] = [
      ['Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0', 'Firefox on Linux'],
      ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Chrome on Windows'],
      ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0', 'Edge on Windows'],
      ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15', 'Safari on macOS'],
      ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/114.0.0.0', 'Opera on macOS'],
      ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1', 'Safari on iOS'],
      ['Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1', 'Chrome on iOS'],
      ['Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15', 'Firefox on iOS'],
      ['Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36', 'Chrome on Android'],
      ['Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36', 'Samsung Internet on Android'],
      ['Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0', 'Firefox on Android'],
      ['Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Chrome on ChromeOS'],
      ['Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko', 'Internet Explorer on Windows'],
      ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36', 'Chrome on Linux'],
    ];
    for (const [header, device] of cases) assert.equal(deviceOf(header), device, header);
  });

  it('names what it can of the rest, and nothing of what it cannot', () => {
    assert.equal(deviceOf('Mozilla/5.0 (X11; Linux x86_64) SomethingNew/1.0'), 'A browser on Linux');
    assert.equal(deviceOf('curl/8.11.0'), undefined);
    assert.equal(deviceOf(''), undefined);
    assert.equal(deviceOf(undefined), undefined);
  });

  it('returns only names from its lists, never text of the header, however long or odd', () => {
    assert.equal(deviceOf(`<script>alert(1)</script>${'Firefox/1 '.repeat(10_000)}`), 'Firefox');
    assert.equal(deviceOf(`${'x'.repeat(10_000)} Firefox/133.0`), undefined, 'only the start of a header is read');
    for (const header of ['Firefox/1 (Windows Phone 10)', 'SamsungBrowser/1 Windows Phone']) assert.ok(deviceOf(header)!.length <= MAX_DEVICE_LENGTH);
  });
});
