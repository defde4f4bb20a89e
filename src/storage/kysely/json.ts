/** Lists are JSON text in both dialects. */
export const toJson = (value: unknown): string => JSON.stringify(value);

export function fromJsonList(text: string): string[] {
  const value = JSON.parse(text) as unknown;
  return Array.isArray(value) ? value.map(String) : [];
}

export const flag = (value: boolean): number => (value ? 1 : 0);
