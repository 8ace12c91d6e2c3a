import { MlaError } from "../errors.js";

/** "1,2,3" -> [1, 2, 3]; anything else is a one-line error naming the flag. */
export function parseIds(s: string, flag: string): number[] {
  const parts = s.split(",").map((p) => p.trim()).filter((p) => p.length > 0);
  if (parts.length === 0) throw new MlaError(`${flag} needs a comma-separated list of token ids, e.g. 1,2,3`);
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new MlaError(`${flag}: "${p}" is not a token id (non-negative integer)`);
    return Number(p);
  });
}

export function parseInt10(s: string, flag: string, min = 0): number {
  if (!/^-?\d+$/.test(s.trim()) || Number(s) < min) throw new MlaError(`${flag} must be an integer >= ${min}, got "${s}"`);
  return Number(s);
}

export function parseFloatArg(s: string, flag: string): number {
  const v = Number(s);
  if (s.trim() === "" || !Number.isFinite(v)) throw new MlaError(`${flag} must be a number, got "${s}"`);
  return v;
}

export function parseMode(s: string): "auto" | "naive" | "absorb" {
  if (s !== "auto" && s !== "naive" && s !== "absorb") throw new MlaError(`--attention must be auto, naive or absorb, got "${s}"`);
  return s;
}
