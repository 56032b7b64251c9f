// The local dashboard: filters and adds up the cells of data.js (written by page.py), and
// draws them with Chart.js. No request leaves the page.
(function () {
  "use strict";
  const D = window.RETAIL_DATA;
  const def = D.definition;
  const TOP = def.sheets.top_customers.top;
  const money = new Intl.NumberFormat("en-US", {
    style: "currency", currency: D.reporting_currency || "USD", maximumFractionDigits: 2,
  });
  const count = new Intl.NumberFormat("en-US");
  const ALL = -1;
  const filterValues = {
    category: D.categories, channel: D.channels, region: D.regions, currency: D.currencies,
  };

  // The filter state, kept in the address (#from=..&to=..&category=..), so a refresh keeps it.
  function initialState() {
    const state = { from: 0, to: D.periods.length - 1, category: ALL, channel: ALL, region: ALL, currency: ALL };
    const params = new URLSearchParams(location.hash.slice(1));
    for (const key of Object.keys(state)) {
      if (!params.has(key)) continue;
      const value = params.get(key);
      const values = key === "from" || key === "to" ? D.periods : filterValues[key];
      const found = values.indexOf(value);
      if (found >= 0) state[key] = found;
    }
    if (state.from > state.to) [state.from, state.to] = [state.to, state.from];
    return state;
  }
  let state = initialState();

  function saveState() {
    const params = new URLSearchParams();
    if (state.from > 0) params.set("from", D.periods[state.from]);
    if (state.to < D.periods.length - 1) params.set("to", D.periods[state.to]);
    for (const key of Object.keys(filterValues)) {
      if (state[key] !== ALL) params.set(key, filterValues[key][state[key]]);
    }
    history.replaceState(null, "", params.toString() ? "#" + params : location.pathname);
  }

  // --- Filters ---------------------------------------------------------------------------
  const form = document.getElementById("filters");
  function select(name, caption, options, selected, allLabel) {
    const label = document.createElement("label");
    label.textContent = caption;
    const element = document.createElement("select");
    element.name = name;
    element.id = "filter-" + name;
    if (allLabel) element.append(new Option(allLabel, String(ALL)));
    options.forEach((text, i) => element.append(new Option(text, String(i))));
    element.value = String(selected);
    element.addEventListener("change", () => {
      state[name] = Number(element.value);
      if (state.from > state.to) {
        if (name === "from") state.to = state.from; else state.from = state.to;
        syncControls();
      }
      saveState();
      render();
    });
    label.append(element);
    form.append(label);
    return element;
  }
  const controls = {};
  for (const filter of def.filters) {
    if (filter.kind === "range") {
      const periodLabel = D.grain === "day" ? "" : " (" + D.grain + " of)";
      controls.from = select("from", "From" + periodLabel, D.periods, state.from);
      controls.to = select("to", "To" + periodLabel, D.periods, state.to);
    } else {
      controls[filter.field] = select(filter.field, filter.caption, filterValues[filter.field],
        state[filter.field], "All");
    }
  }
  const reset = document.createElement("button");
  reset.type = "button";
  reset.id = "filter-reset";
  reset.textContent = "Clear filters";
  reset.addEventListener("click", () => {
    state = { from: 0, to: D.periods.length - 1, category: ALL, channel: ALL, region: ALL, currency: ALL };
    syncControls();
    saveState();
    render();
  });
  form.append(reset);
  function syncControls() {
    for (const [name, element] of Object.entries(controls)) element.value = String(state[name]);
  }

  // --- Adding up --------------------------------------------------------------------------
  function matches(cells, i, category) {
    const p = cells.period[i];
    return p >= state.from && p <= state.to && cells.category[i] === category &&
      (state.channel === ALL || cells.channel[i] === state.channel) &&
      (state.region === ALL || cells.region[i] === state.region) &&
      (state.currency === ALL || cells.currency[i] === state.currency);
  }

  function compute() {
    const s = D.sales;
    const byPeriod = D.periods.map(() => ({ net: 0, orders: 0 }));
    const byCategory = D.categories.map(() => ({ net: 0, orders: 0 }));
    let net = 0, orders = 0, bound = 0;
    const n = s.period ? s.period.length : 0;
    for (let i = 0; i < n; i++) {
      if (matches(s, i, state.category)) {
        net += s.net[i];
        orders += s.orders[i];
        bound += s.other_max[i];
        byPeriod[s.period[i]].net += s.net[i];
        byPeriod[s.period[i]].orders += s.orders[i];
      }
      // Categories: each category's own cells, under every other filter.
      const c = s.category[i];
      if (c !== ALL && (state.category === ALL || c === state.category) && matches(s, i, c)) {
        byCategory[c].net += s.net[i];
        byCategory[c].orders += s.orders[i];
      }
    }
    const cs = D.customer_sales;
    const perCustomer = new Map();
    const m = cs.customer ? cs.customer.length : 0;
    for (let i = 0; i < m; i++) {
      if (!matches(cs, i, state.category)) continue;
      const entry = perCustomer.get(cs.customer[i]) || { customer: cs.customer[i], net: 0, orders: 0 };
      entry.net += cs.net[i];
      entry.orders += cs.orders[i];
      perCustomer.set(cs.customer[i], entry);
    }
    const top = [...perCustomer.values()].filter((e) => e.net > 0)
      .sort((a, b) => b.net - a.net || a.customer - b.customer).slice(0, TOP);
    // No customer outside the candidates can have more than any of these in the filtered cells.
    const t = D.thresholds;
    let periods = 0;
    for (let p = state.from; p <= state.to; p++) periods += t.period[p];
    const limit = Math.min(bound, t.overall, periods,
      state.category === ALL ? Infinity : t.category[state.category],
      state.channel === ALL ? Infinity : t.channel[state.channel],
      state.region === ALL ? Infinity : t.region[state.region],
      state.currency === ALL ? Infinity : t.currency[state.currency]);
    const exact = limit <= 0 || (top.length === TOP && top[TOP - 1].net >= limit);
    return { net, orders, byPeriod, byCategory, top, exact };
  }

  // --- Drawing ----------------------------------------------------------------------------
  const headlines = document.getElementById("headlines");
  const metricElements = {};
  for (const name of def.headlines) {
    const measure = def.measures[name];
    const box = document.createElement("div");
    box.className = "metric";
    box.dataset.metric = name;
    box.innerHTML = '<span class="label"></span><span class="value"></span>';
    box.querySelector(".label").textContent = measure.caption;
    headlines.append(box);
    metricElements[name] = box;
  }

  const main = document.getElementById("dashboards");
  const canvases = {};
  for (const dashboard of def.dashboards) {
    const section = document.createElement("section");
    section.className = "dashboard";
    section.id = "dashboard-" + dashboard.name;
    section.innerHTML = "<h2></h2><div class=sheets></div>";
    section.querySelector("h2").textContent = dashboard.caption;
    for (const name of dashboard.sheets) {
      const sheet = def.sheets[name];
      const box = document.createElement("div");
      box.className = "sheet";
      box.id = "sheet-" + name;
      box.innerHTML = "<h3></h3><div class=chart><canvas></canvas></div>";
      box.querySelector("h3").textContent = sheet.caption;
      canvases[name] = box.querySelector("canvas");
      if (name === "top_customers") {
        box.insertAdjacentHTML("beforeend", '<table id="top-customers"><thead><tr><th>#</th><th>Customer</th>' +
          '<th class="number">Net revenue</th><th class="number">Orders</th></tr></thead><tbody></tbody></table>' +
          '<p class="note" id="top-customers-note"></p>');
      }
      section.querySelector(".sheets").append(box);
    }
    main.append(section);
  }

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  const periodLabels = D.periods;
  const charts = {
    net_revenue_over_time: new Chart(canvases.net_revenue_over_time, {
      type: "line",
      data: { labels: periodLabels, datasets: [{ label: def.measures.net_revenue.caption, data: [], borderColor: "#2f6fb3", backgroundColor: "#2f6fb333", fill: true, pointRadius: 0, tension: 0.2 }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    }),
    orders_and_aov: new Chart(canvases.orders_and_aov, {
      type: "bar",
      data: { labels: periodLabels, datasets: [
        { label: def.measures.orders.caption, data: [], backgroundColor: "#2f6fb3aa", yAxisID: "y" },
        { label: def.measures.average_order_value.caption, data: [], type: "line", borderColor: "#e08a2c", pointRadius: 0, yAxisID: "y1" },
      ] },
      options: { scales: { y: { beginAtZero: true, position: "left" }, y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } },
    }),
    top_customers: new Chart(canvases.top_customers, {
      type: "bar",
      data: { labels: [], datasets: [{ label: def.measures.net_revenue.caption, data: [], backgroundColor: "#2f6fb3aa" }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } },
    }),
    revenue_by_category: new Chart(canvases.revenue_by_category, {
      type: "bar",
      data: { labels: [], datasets: [{ label: def.measures.net_revenue.caption, data: [], backgroundColor: "#e08a2caa" }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } } },
    }),
  };

  function setMetric(name, value, text) {
    metricElements[name].dataset.value = value;
    metricElements[name].querySelector(".value").textContent = text;
  }

  function render() {
    const r = compute();
    setMetric("net_revenue", (r.net / 100).toFixed(2), money.format(r.net / 100));
    setMetric("orders", String(r.orders), count.format(r.orders));
    const aov = r.orders ? r.net / r.orders / 100 : 0;
    setMetric("average_order_value", aov.toFixed(2), money.format(aov));

    const range = (values) => values.slice(state.from, state.to + 1);
    const labels = range(periodLabels);
    charts.net_revenue_over_time.data.labels = labels;
    charts.net_revenue_over_time.data.datasets[0].data = range(r.byPeriod).map((p) => p.net / 100);
    charts.orders_and_aov.data.labels = labels;
    charts.orders_and_aov.data.datasets[0].data = range(r.byPeriod).map((p) => p.orders);
    charts.orders_and_aov.data.datasets[1].data = range(r.byPeriod).map((p) => (p.orders ? p.net / p.orders / 100 : 0));

    const names = D.customers.name;
    charts.top_customers.data.labels = r.top.map((e) => names[e.customer]);
    charts.top_customers.data.datasets[0].data = r.top.map((e) => e.net / 100);
    const body = document.querySelector("#top-customers tbody");
    body.replaceChildren(...r.top.map((e, i) => {
      const row = document.createElement("tr");
      row.dataset.customer = String(D.customers.key[e.customer]);
      row.dataset.value = (e.net / 100).toFixed(2);
      for (const [text, numeric] of [[String(i + 1), false], [names[e.customer], false],
        [money.format(e.net / 100), true], [count.format(e.orders), true]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (numeric) cell.className = "number";
        row.append(cell);
      }
      return row;
    }));
    const note = document.getElementById("top-customers-note");
    note.dataset.exact = String(r.exact);
    note.textContent = r.exact ? "Exact for these filters." :
      "May be approximate for these filters: a customer outside the page's candidates could rank here; the warehouse has the exact list (customer_revenue, rpt_sales).";

    const categories = D.categories.map((name, i) => ({ name, ...r.byCategory[i] }))
      .filter((c) => c.net !== 0 || c.orders !== 0).sort((a, b) => b.net - a.net);
    charts.revenue_by_category.data.labels = categories.map((c) => c.name);
    charts.revenue_by_category.data.datasets[0].data = categories.map((c) => c.net / 100);
    for (const chart of Object.values(charts)) chart.update();

    const span = D.periods.length ? D.periods[0] + " to " + D.periods[D.periods.length - 1] : "no data yet";
    document.getElementById("status").textContent = "Data " + span + " (by " + D.grain + "), generated " +
      D.generated_at + (D.refresh_seconds ? "; refreshes every " + D.refresh_seconds + " s" : "") + ".";
  }

  render();
  document.body.dataset.ready = "true";
  if (D.refresh_seconds) setTimeout(() => location.reload(), D.refresh_seconds * 1000);
})();
