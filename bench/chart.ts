// A small SVG line chart written by hand: GB/s against input size (log scale), one line per codec plus memcpy,
// four panels (compress / decompress x 1 / 2 threads).
import type { Row } from './common';

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#ad494a'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const sizeLabel = (b: number) => (b >= 1 << 20 ? `${b / (1 << 20)}M` : `${b / 1024}K`);

export function chartSvg(rows: Row[], title: string): string {
  const panels: Array<{ op: Row['op']; threads: number; label: string }> = [
    { op: 'compress', threads: 1, label: 'compress, 1 thread' },
    { op: 'compress', threads: 2, label: 'compress, 2 threads' },
    { op: 'decompress', threads: 1, label: 'decompress, 1 thread' },
    { op: 'decompress', threads: 2, label: 'decompress, 2 threads' },
  ];
  const codecs = [...new Set(rows.filter((r) => r.op === 'compress').map((r) => r.codec))];
  const color = (c: string) => (c.startsWith('memcpy') ? '#000' : c === 'naive-ts-qsgd' ? '#999' : COLORS[codecs.indexOf(c) % COLORS.length]);
  const sizes = [...new Set(rows.map((r) => r.bytes))].sort((a, b) => a - b);
  const W = 1200, H = 900, pw = 480, ph = 300, ml = 80, mt = 60, gapx = 110, gapy = 100;
  // log-scale GB/s axis, whole decades around the data
  const plotted = rows.filter((r) => r.op === 'compress' || r.op === 'decompress' || r.op === 'memcpy' || r.op === 'naive-ts-compress').map((r) => r.gbps).filter((g) => g > 0);
  const dMax = Math.ceil(Math.log10(Math.max(1, ...plotted)));
  const dMin = Math.min(dMax - 1, Math.floor(Math.log10(Math.min(...plotted, 1))));
  const lx = Math.log2(sizes[0]), hx = Math.log2(sizes[sizes.length - 1]);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`);
  panels.forEach((p, k) => {
    const x0 = ml + (k % 2) * (pw + gapx), y0 = mt + Math.floor(k / 2) * (ph + gapy);
    const X = (b: number) => x0 + (hx === lx ? pw / 2 : ((Math.log2(b) - lx) / (hx - lx)) * pw);
    const Y = (g: number) => y0 + ph - ((Math.log10(Math.max(g, 10 ** dMin)) - dMin) / (dMax - dMin)) * ph;
    out.push(`<text x="${x0 + pw / 2}" y="${y0 - 10}" text-anchor="middle" font-weight="bold">${esc(p.label)}</text>`);
    out.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
    for (let e = dMin; e <= dMax; e++) {
      for (const m of [1, 2, 5]) {
        const g = m * 10 ** e;
        if (e === dMax && m > 1) break;
        out.push(`<line x1="${x0}" x2="${x0 + pw}" y1="${Y(g)}" y2="${Y(g)}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
        out.push(`<text x="${x0 - 6}" y="${Y(g) + 4}" text-anchor="end">${Number(g.toPrecision(1))}</text>`);
      }
    }
    for (const b of sizes) out.push(`<text x="${X(b)}" y="${y0 + ph + 16}" text-anchor="middle">${sizeLabel(b)}</text>`);
    out.push(`<text x="${x0 + pw / 2}" y="${y0 + ph + 34}" text-anchor="middle">input size (f32 bytes)</text>`);
    out.push(`<text transform="translate(${x0 - 44},${y0 + ph / 2}) rotate(-90)" text-anchor="middle">GB/s of f32 input (log)</text>`);
    const series = [...codecs, 'memcpy', ...(p.op === 'compress' && p.threads === 1 ? ['naive-ts-qsgd'] : [])];
    for (const c of series) {
      let pts = rows
        .filter((r) => r.codec === c && (c === 'memcpy' ? r.op === 'memcpy' : c === 'naive-ts-qsgd' ? r.op === 'naive-ts-compress' : r.op === p.op && r.threads === p.threads))
        .sort((a, b) => a.bytes - b.bytes);
      if (c === 'memcpy') {
        // every kernel's suite times memcpy; draw the median per size
        pts = sizes.map((b) => {
          const at = pts.filter((r) => r.bytes === b).sort((x, y) => x.gbps - y.gbps);
          return at[Math.floor(at.length / 2)];
        }).filter(Boolean);
      }
      if (!pts.length) continue;
      const d = pts.map((r, i) => `${i ? 'L' : 'M'}${X(r.bytes).toFixed(1)},${Y(r.gbps).toFixed(1)}`).join(' ');
      const dash = c === 'memcpy' ? '' : c === 'naive-ts-qsgd' ? ' stroke-dasharray="5,4"' : '';
      out.push(`<path d="${d}" fill="none" stroke="${color(c)}" stroke-width="${c === 'memcpy' ? 3 : 1.8}"${dash}/>`);
      for (const r of pts) out.push(`<circle cx="${X(r.bytes).toFixed(1)}" cy="${Y(r.gbps).toFixed(1)}" r="2.5" fill="${color(c)}"/>`);
    }
  });
  // legend
  const legend = [...codecs, 'memcpy (median)', 'naive-ts-qsgd'];
  const ly = H - 48;
  legend.forEach((c, i) => {
    const x = ml + (i % 6) * 180, y = ly + Math.floor(i / 6) * 20;
    out.push(`<line x1="${x}" x2="${x + 24}" y1="${y}" y2="${y}" stroke="${color(c)}" stroke-width="${c.startsWith('memcpy') ? 3 : 2}"${c === 'naive-ts-qsgd' ? ' stroke-dasharray="5,4"' : ''}/>`);
    out.push(`<text x="${x + 30}" y="${y + 4}">${esc(c)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
