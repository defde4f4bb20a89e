/**
 * What the account page says a browser session was signed in with: a browser and a system named
 * from the User-Agent header ("Firefox on Linux"), as Google's, GitHub's and Keycloak's device
 * lists say. Only names from the lists below are ever returned, never text of the header: the
 * header is whatever the client sent (any length, any characters), while this is stored with the
 * session and shown on a page. A header that names neither gives undefined ("unknown browser").
 *
 * The order matters: browsers built on Chromium name Chrome and Safari too, and Chrome names
 * Safari (so Edge, Opera, Samsung Internet and Vivaldi come before Chrome, Chrome before Safari);
 * Android names Linux, and iOS names "Mac OS X" (so each comes before the other).
 */

const BROWSERS: readonly (readonly [RegExp, string])[] = [
  [/\bEdg(?:e|A|iOS)?\//, 'Edge'],
  [/\b(?:OPR|Opera|OPT)\//, 'Opera'],
  [/\bSamsungBrowser\//, 'Samsung Internet'],
  [/\bVivaldi\//, 'Vivaldi'],
  [/\bYaBrowser\//, 'Yandex Browser'],
  [/\b(?:Firefox|FxiOS)\//, 'Firefox'],
  [/\b(?:HeadlessChrome|Chrome|CriOS|Chromium)\//, 'Chrome'],
  [/\bVersion\/[\d.]+.*\bSafari\/|\bMobile\/\w+ Safari\/|\(iP(?:hone|ad|od);.*\bAppleWebKit\//, 'Safari'],
  [/\b(?:MSIE |Trident\/)/, 'Internet Explorer'],
];

const SYSTEMS: readonly (readonly [RegExp, string])[] = [
  [/\bWindows Phone\b/, 'Windows Phone'],
  [/\bWindows\b/, 'Windows'],
  [/\bAndroid\b/, 'Android'],
  [/\b(?:iPhone|iPad|iPod)\b/, 'iOS'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\b(?:Linux|X11|Ubuntu|Fedora)\b/, 'Linux'],
  [/\b(?:FreeBSD|OpenBSD|NetBSD)\b/, 'BSD'],
];

/** Real User-Agent headers are a few hundred characters; past that nothing is read. */
const READ_AT_MOST = 512;

/** The longest summary the lists can make ("Samsung Internet on Windows Phone"). */
export const MAX_DEVICE_LENGTH = 64;

/** "Firefox on Linux", "Chrome", "a browser on Android", or undefined when the header names neither. */
export function deviceOf(userAgent: string | undefined): string | undefined {
  if (userAgent === undefined) return undefined;
  const header = userAgent.slice(0, READ_AT_MOST);
  const browser = BROWSERS.find(([pattern]) => pattern.test(header))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(header))?.[1];
  if (browser && system) return `${browser} on ${system}`;
  if (browser) return browser;
  if (system) return `A browser on ${system}`;
  return undefined;
}
