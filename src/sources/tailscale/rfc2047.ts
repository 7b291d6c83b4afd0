// tailscale serve sends non-ASCII names as RFC 2047 encoded words
// (`=?utf-8?q?Jos=C3=A9_Garc=C3=ADa?=`), split into several words for long values.

const ENCODED_WORD = /=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=/g;

export function decodeRfc2047(value: string): string {
  // Whitespace between two adjacent encoded words is not part of the text (RFC 2047 §6.2).
  const joined = value.replace(/(\?=)\s+(?==\?)/g, '$1');
  return joined.replace(ENCODED_WORD, (word, charset: string, encoding: string, text: string) => {
    try {
      const bytes = encoding.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : qDecode(text);
      return new TextDecoder(charset.split('*')[0]!, { fatal: true }).decode(bytes);
    } catch {
      return word;
    }
  });
}

function qDecode(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '_') out.push(0x20);
    else if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === '=') throw new Error('bad Q escape');
    else out.push(c.charCodeAt(0) & 0xff);
  }
  return Uint8Array.from(out);
}
