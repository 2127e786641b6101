#include "eval/report_html.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "base/text.hpp"

namespace rvec {
namespace {

using nlohmann::json;

constexpr const char* kStyle = R"css(
body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; }
.warning { color: #a40; }
#controls { margin: .6em 0; display: flex; flex-wrap: wrap; gap: 1em; align-items: center; }
#list { max-height: 45vh; overflow: auto; display: inline-block; }
#problems th { position: sticky; top: 0; }
#problems tr.problem { cursor: pointer; }
#problems tr.problem:hover, #problems tr.selected { background: #eef4ff; }
.acc { text-align: center; }
.acc1 { background: #c8e6c9; } .acc0 { background: #ffcdd2; } .accp { background: #fff3c4; }
#detail table { table-layout: fixed; }
#detail td.cell { min-width: 14em; max-width: 28em; }
#detail td.v-correct { background: #f0faf0; } #detail td.v-wrong { background: #fdf0f0; }
#detail td.v-no_answer { background: #fff8e1; } #detail td.v-error { background: #eee; }
#detail td.changed { outline: 2px solid #6a1b9a; outline-offset: -2px; }
pre { white-space: pre-wrap; word-break: break-word; margin: .3em 0; font-size: 13px; }
.badge { display: inline-block; padding: 0 5px; margin: 1px 2px 1px 0; border-radius: 3px; font-size: 12px; background: #ddd; }
.badge.correct, .badge.ja, .badge.style { background: #a5d6a7; }
.badge.wrong, .badge.not-ja, .badge.no-style, .badge.cut { background: #ef9a9a; }
.badge.no_answer { background: #ffe082; } .badge.steps { background: #90caf9; }
mark { background: #ffeb3b; }
)css";

// The drill-down: lists the problems, filters them, shows one side by side.
// Its state is the URL fragment (see report_html.hpp).
constexpr const char* kScript = R"js(
(() => {
  const data = JSON.parse(document.getElementById('rvec-data').textContent);
  const el = (tag, props, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith('data-') || k === 'class') e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  };
  const readState = () => {
    const p = new URLSearchParams(location.hash.slice(1));
    const bench = data.benchmarks.find(b => b.name === p.get('bench')) || data.benchmarks[0];
    return { bench, problem: p.get('problem'), model: p.get('model') || '',
             filters: new Set((p.get('filter') || '').split(',').filter(f => f)) };
  };
  const go = changes => {
    const p = new URLSearchParams(location.hash.slice(1));
    for (const [k, v] of Object.entries(changes)) { if (v) p.set(k, v); else p.delete(k); }
    location.hash = p.toString();
  };
  const baseIndex = b => b.models.indexOf(b.baseline);
  const sameSample = (cells, s) => cells.find(x => x.i === s.i);
  const changed = (b, prob, m) => {
    const base = baseIndex(b);
    if (base < 0 || m === base) return false;
    return prob.cells[m].some(s => { const t = sameSample(prob.cells[base], s); return t && t.v !== s.v; });
  };
  const tests = {
    changed: (b, prob, ms) => ms.some(m => changed(b, prob, m)),
    no_answer: (b, prob, ms) => ms.some(m => prob.cells[m].some(s => s.v === 'no_answer')),
    cut: (b, prob, ms) => ms.some(m => prob.cells[m].some(s => s.cut)),
  };
  const shownModels = (b, model) => model && b.models.includes(model) ? [b.models.indexOf(model)] : b.models.map((_, i) => i);

  function renderProblems(st) {
    const b = st.bench, ms = shownModels(b, st.model);
    const table = document.getElementById('problems');
    table.replaceChildren(el('tr', {}, el('th', {}, 'problem'), el('th', {}, 'gold'), ...b.models.map(m => el('th', {}, m))));
    let shown = 0;
    for (const prob of b.problems) {
      if (![...st.filters].every(f => !tests[f] || tests[f](b, prob, ms))) continue;
      ++shown;
      const row = el('tr', { class: 'problem' + (prob.id === st.problem ? ' selected' : ''), 'data-id': prob.id },
                     el('td', {}, prob.id), el('td', {}, prob.gold));
      for (const cells of prob.cells) {
        const correct = cells.filter(s => s.v === 'correct').length;
        const cls = !cells.length ? '' : correct === cells.length ? 'acc1' : correct ? 'accp' : 'acc0';
        row.append(el('td', { class: 'acc ' + cls }, cells.length ? correct + '/' + cells.length : ''));
      }
      row.onclick = () => go({ problem: prob.id });
      table.append(row);
    }
    document.getElementById('count').textContent = shown + ' of ' + b.problems.length + ' problems';
  }

  function sampleCell(b, prob, m, i) {
    const s = prob.cells[m].find(x => x.i === i);
    if (!s) return el('td', { class: 'cell' });
    const text = Array.from(s.text || '');
    const pre = el('pre', { class: 'text' });
    if (s.style) pre.append(text.slice(0, s.style[0]).join(''), el('mark', {}, text.slice(s.style[0], s.style[1]).join('')),
                            text.slice(s.style[1]).join(''));
    else pre.append(text.join(''));
    const base = baseIndex(b), t = base >= 0 && base !== m ? sameSample(prob.cells[base], s) : null;
    const badges = el('div', {}, el('span', { class: 'badge ' + s.v }, s.v.replace('_', ' ')),
                      el('span', { class: 'badge ' + (s.ja ? 'ja' : 'not-ja') }, s.ja ? 'Japanese' : 'not Japanese'));
    if (data.style) badges.append(el('span', { class: 'badge ' + (s.style ? 'style' : 'no-style') }, s.style ? 'style' : 'no style'));
    if (s.steps) badges.append(el('span', { class: 'badge steps' }, 'steps'));
    if (s.cut) badges.append(el('span', { class: 'badge cut' }, 'cut off'));
    return el('td', { class: 'cell v-' + s.v + (t && t.v !== s.v ? ' changed' : ''), 'data-model': b.models[m], 'data-sample': i },
              badges, el('div', { class: 'answer' }, 'answer: ' + (s.x === undefined ? '—' : s.x) + ' (rule ' + s.rule + ')'),
              pre, s.reasoning ? el('details', {}, el('summary', {}, 'reasoning'), el('pre', {}, s.reasoning)) : null);
  }

  function renderDetail(st) {
    const detail = document.getElementById('detail');
    const b = st.bench, prob = b.problems.find(p => p.id === st.problem);
    if (!prob) { detail.replaceChildren(el('p', { class: 'note' }, 'Choose a problem above to see every model\'s responses.')); return; }
    detail.setAttribute('data-problem', prob.id);
    const indexes = [...new Set(prob.cells.flat().map(s => s.i))].sort((x, y) => x - y);
    const table = el('table', {}, el('tr', {}, el('th', {}, 'sample'), ...b.models.map(m => el('th', {}, m))));
    for (const i of indexes) table.append(el('tr', {}, el('th', {}, String(i)), ...b.models.map((_, m) => sampleCell(b, prob, m, i))));
    detail.replaceChildren(el('h3', {}, 'Problem ' + prob.id + ' (gold ' + prob.gold + ')'), el('pre', { class: 'question' }, prob.question), table);
  }

  function render() {
    const st = readState();
    const bench = document.getElementById('bench'), model = document.getElementById('model');
    bench.replaceChildren(...data.benchmarks.map(b => el('option', { value: b.name, selected: b === st.bench }, b.name || '(one benchmark)')));
    model.replaceChildren(el('option', { value: '' }, 'any model'), ...st.bench.models.map(m => el('option', { value: m, selected: m === st.model }, m)));
    for (const box of document.querySelectorAll('input[name=filter]')) box.checked = st.filters.has(box.value);
    renderProblems(st);
    renderDetail(st);
  }

  document.getElementById('bench').onchange = e => go({ bench: e.target.value, problem: '', model: '' });
  document.getElementById('model').onchange = e => go({ model: e.target.value });
  for (const box of document.querySelectorAll('input[name=filter]')) {
    box.onchange = () => go({ filter: [...document.querySelectorAll('input[name=filter]:checked')].map(b => b.value).join(',') });
  }
  window.addEventListener('hashchange', render);
  render();
})();
)js";

// Code points in the first `bytes` bytes of UTF-8 `text` (the page's script counts characters).
size_t code_points(const std::string& text, size_t bytes) {
  size_t n = 0;
  for (size_t i = 0; i < bytes && i < text.size(); ++i) n += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
  return n;
}

json sample_json(const GradedSample& s) {
  json j = {{"i", s.index}, {"v", verdict_name(s.verdict)}, {"rule", s.rule}, {"text", s.response}};
  if (s.extracted) j["x"] = *s.extracted;
  if (!s.reasoning.empty()) j["reasoning"] = s.reasoning;
  if (s.cut_off) j["cut"] = true;
  if (s.japanese >= 0.5) j["ja"] = true;
  if (s.steps) j["steps"] = true;
  if (s.style) j["style"] = {code_points(s.response, s.style->first), code_points(s.response, s.style->second)};
  return j;
}

// Every problem any group has, each with one list of samples per group (in the groups' order).
json benchmark_json(const Report& r) {
  std::map<std::string, json> problems;
  for (size_t m = 0; m < r.samples.size(); ++m) {
    for (const auto& [id, p] : r.samples[m].problems) {
      json& problem = problems[id];
      if (problem.is_null()) {
        problem = {{"id", id}, {"gold", p.gold}, {"question", p.question}, {"cells", json::array()}};
        for (size_t i = 0; i < r.samples.size(); ++i) problem["cells"].push_back(json::array());
      }
      for (const auto& s : p.samples) problem["cells"][m].push_back(sample_json(s));
    }
  }
  json models = json::array(), list = json::array();
  for (const auto& g : r.groups) models.push_back(g.label);
  for (auto& [id, problem] : problems) list.push_back(std::move(problem));
  return {{"name", r.benchmark}, {"baseline", r.baseline}, {"models", models}, {"problems", list}};
}

// JSON inside <script>: every '<' (only ever inside a string) escaped, so no "</script>" can close it.
std::string script_safe(const std::string& json_text) {
  std::string out;
  out.reserve(json_text.size());
  for (const char c : json_text) out += c == '<' ? std::string("\\u003c") : std::string(1, c);
  return out;
}

std::string html_table(const TextTable& t) {
  std::string out = "<table class=\"report\"><tr>";
  for (const auto& c : t.columns) out += fmt::format("<th>{}</th>", xml_escape(c.header));
  out += "</tr>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (size_t i = 0; i < row.size(); ++i) {
      out += fmt::format("<td{}>{}</td>", t.columns[i].left ? "" : " class=\"num\"", xml_escape(row[i]));
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

std::string paragraphs(const std::string& text, const char* css_class) {
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    if (end > at) out += fmt::format("<p class=\"{}\">{}</p>\n", css_class, xml_escape(text.substr(at, end - at)));
    at = end + 1;
  }
  return out;
}

std::string benchmark_section(const Report& r, bool named) {
  std::string out = named ? fmt::format("<h2>{}</h2>\n", xml_escape(r.benchmark)) : "";
  for (const auto& w : r.warnings) out += paragraphs("warning: " + w, "warning");
  out += fmt::format("<p class=\"note\">grading: {}; baseline: {}; 95% CIs: bootstrap over problems (Wilson for avg@1)</p>\n",
                     xml_escape(r.mode), xml_escape(r.baseline));
  out += html_table(report_table(r));
  if (r.comparisons > 0) out += paragraphs(comparisons_note(r), "note");
  out += paragraphs(held_out_text(r), "note");
  return out + report_svg(r);
}

}  // namespace

std::string report_html(std::span<const Report> reports) {
  json data = {{"benchmarks", json::array()}, {"style", !reports.empty() && reports.front().has_style}};
  for (const auto& r : reports) data["benchmarks"].push_back(benchmark_json(r));
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rvec report</title>\n<style>{}</style>\n"
      "</head><body>\n<h1>rvec report</h1>\n",
      kStyle);
  if (reports.size() > 1) out += "<h2>Summary: avg@k [95% CI] per benchmark</h2>\n" + html_table(summary_table(reports));
  for (const auto& r : reports) out += benchmark_section(r, reports.size() > 1);
  out +=
      "<h2>Answers</h2>\n<div id=\"controls\"><label>benchmark <select id=\"bench\"></select></label>\n"
      "<label><input type=\"checkbox\" name=\"filter\" value=\"changed\"> changed verdict vs baseline</label>\n"
      "<label><input type=\"checkbox\" name=\"filter\" value=\"no_answer\"> no answer</label>\n"
      "<label><input type=\"checkbox\" name=\"filter\" value=\"cut\"> cut off</label>\n"
      "<label>in <select id=\"model\"></select></label> <span id=\"count\"></span></div>\n"
      "<div id=\"list\"><table id=\"problems\"></table></div>\n<div id=\"detail\"></div>\n";
  out += fmt::format("<script type=\"application/json\" id=\"rvec-data\">{}</script>\n<script>{}</script>\n</body></html>\n",
                     script_safe(data.dump()), kScript);
  return out;
}

}  // namespace rvec
