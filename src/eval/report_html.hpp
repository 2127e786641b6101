// The report as one self-contained HTML page (no network, no external
// files): each benchmark's table, held-out choice and plot (inline SVG), and
// a drill-down over every response. The page's script (small, no libraries)
// lists the problems with each model's correct count, filters them
// ("changed verdict vs baseline", "no answer", "cut off", for one model or
// any), and shows a chosen problem's responses side by side, one column per
// model (w = 0, each w, post, the controls), one row per sample, with the
// extracted answer, the rule that fired, the verdict, and the Japanese,
// style, steps and cut-off flags; the style pattern's match is marked.
//
// The page's state is its URL fragment, so a view can be linked (and a
// headless browser can open one): #bench=NAME&problem=ID&filter=changed,no_answer,cut&model=LABEL.
//
// Pure functions.
#pragma once

#include <span>
#include <string>

#include "eval/report.hpp"

namespace rvec {

std::string report_html(std::span<const Report> reports);

}  // namespace rvec
