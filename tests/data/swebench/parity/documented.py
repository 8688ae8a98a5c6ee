"""Test-runner output in the formats the swebench package's parsers document, for parsers whose
runner is not on this machine (JavaScript runners, Go, Java build tools, PHP, Ruby, C suites).

Each entry: parser name → (context, runner output, exit code). Every log has passing and failing
tests in the runner's own layout (as the parser's docstring and patterns describe it), so the
parity test can grade one resolved and one unresolved prediction on it.
"""

from __future__ import annotations

DJANGO = """Testing against Django installed in '/testbed/django' with up to 1 processes
Importing application humanize
Creating test database for alias 'default'...
test_apnumber (humanize_tests.tests.HumanizeTests.test_apnumber) ... ok
test_intcomma (humanize_tests.tests.HumanizeTests.test_intcomma) ... ok
test_naturalday (humanize_tests.tests.HumanizeTests.test_naturalday) ... FAIL
test_naturaltime (humanize_tests.tests.HumanizeTests.test_naturaltime) ... ERROR
test_ordinal (humanize_tests.tests.HumanizeTests.test_ordinal) ... skipped 'needs babel'
test_i18n_html_ordinal (humanize_tests.tests.HumanizeTests.test_i18n_html_ordinal)
Allow html in output on i18n strings ... ok

======================================================================
FAIL: test_naturalday (humanize_tests.tests.HumanizeTests.test_naturalday)
----------------------------------------------------------------------
AssertionError: 'today' != 'yesterday'

----------------------------------------------------------------------
Ran 6 tests in 0.021s

FAILED (failures=1, errors=1, skipped=1)
Destroying test database for alias 'default'...
"""

JEST_VERBOSE = """PASS src/__tests__/parse.test.js
  parser
    ✓ parses numbers (3 ms)
    ✓ parses strings (1 ms)
    ✕ parses dates (5 ms)
    ○ skipped parses regexps

Tests:       1 failed, 1 skipped, 2 passed, 4 total
"""

CARBON = """PASS packages/react/src/components/Button/Button-test.js (5.123 s)
PASS packages/react/src/components/Link/Link-test.js (812 ms)
FAIL packages/react/src/components/Tabs/Tabs-test.js (2.5 s)
PASS packages/react/src/components/Tag/Tag-test.js
Test Suites: 1 failed, 3 passed, 4 total
"""

MOCHA_SPEC = """  highlight
    ✓ should detect python (12ms)
    ✓ should detect ruby
    1) should detect bash

  markup
    ✓ keeps entities

  3 passing (1s)
  1 failing

  1) highlight
       should detect bash:
     AssertionError: expected 'sh' to equal 'bash'
"""

CALYPSO = """+ ./node_modules/.bin/jest client/state/selectors/test/get-site.js
 ./node_modules/.bin/jest client/state/selectors/test/get-site.js
  getSite()
    ✓ should return null if the site is not known (4ms)
    ✓ should return a normalized site (2ms)
    ✕ should return the jetpack flag (7ms)
Test Suites: 1 failed, 1 total
"""

KARMA = """Starting browser ChromeHeadless
  render
    ✔ renders a div
    ✖ renders a fragment
  hooks
    ✔ runs effects
SUMMARY:
✔ 2 tests completed
✖ 1 test failed
"""

CHROME_FAILED = """Chrome 120.0.0.0 (Linux x86_64) Chart.controllers.bar should draw bars FAILED
	Expected 1 to be 2.
Chrome 120.0.0.0 (Linux x86_64): Executed 42 of 42 (1 FAILED) (3.2 secs / 3.1 secs)
TOTAL: 1 FAILED, 41 SUCCESS
"""

CHROME_ALL_PASSED = """Chrome 120.0.0.0 (Linux x86_64): Executed 42 of 42 SUCCESS (3.2 secs / 3.1 secs)
TOTAL: 42 SUCCESS
"""

BPMN = """HeadlessChrome 120.0.0 (Linux 0.0.0) Modeling - BpmnUpdater should update parent FAILED
	Expected undefined to be defined.
HeadlessChrome 120.0.0 (Linux 0.0.0): Executed 120 of 120 (1 FAILED) (8.1 secs / 7.9 secs)
TOTAL: 1 FAILED, 119 SUCCESS
"""

OPENLAYERS = """Chrome Headless 120.0.0.0 (Linux x86_64) ol/format/GeoJSON reads features FAILED
	AssertionError: expected 2 to equal 3
Chrome Headless 120.0.0.0 (Linux x86_64): Executed 300 of 300 (1 FAILED) (10 secs)
TOTAL: 1 FAILED, 299 SUCCESS
"""

ESLINT = """  1) RuleTester no-unused-vars valid code:
     AssertionError [ERR_ASSERTION]: Should have no errors but had 1
  2) SourceCode getText returns the text:
     TypeError: Cannot read properties of undefined

  900 passing (20s)
  2 failing
"""

MARKED = """Started
..F...

Failures:
1) Marked Code spans should handle backticks
  Message:
    Expected '<code>' to equal '<code>`</code>'.

6 specs, 1 failure
"""

P5JS = """  Rendering
    ✓ draws a line
  1) p5.Vector
       add()
         should add two vectors:
     AssertionError: expected 1 to equal 2

  40 passing (2s)
  1 failing
"""

PRISM = """./node_modules/.bin/mocha tests/run.js --reporter json
{
  "stats": {"suites": 2, "tests": 3, "passes": 2, "failures": 1},
  "failures": [{"title": "javascript keyword", "fullTitle": "Language javascript keyword"}],
  "passes": [{"title": "css selector", "fullTitle": "Language css selector"},
             {"title": "markup tag", "fullTitle": "Language markup tag"}]
}
"""

QUARTO = """[smoke] > render docs/a.qmd ... \x1b[0m\x1b[32mok\x1b[0m (1s)
[smoke] > render docs/b.qmd ... \x1b[0m\x1b[31mFAILED\x1b[0m (2s)
[unit] > yaml intelligence ... \x1b[0m\x1b[32mok\x1b[0m (5ms)
"""

LIGHTHOUSE_MOCHA = """running 3 test files
  audits
    ✔ computes the score (5ms)
    1) handles missing trace
  gather
    ✔ collects artifacts
  2 passing (1s)
"""

NEXT_V1 = """+ xvfb-run karma start
 xvfb-run karma start
  Button
    ✓ renders a primary button
    ✗ renders a disabled button
  Input
    ✓ accepts text
TOTAL: 1 FAILED, 2 SUCCESS
"""

JEST_JSON = """[PASSED] Map > set > sets a value
[PASSED] Map > get > gets a value
[FAILED] Map > merge > merges deeply
"""

VITEST = """ ✓ packages/runtime-core/__tests__/apiWatch.spec.ts > api: watch > effect 2ms
 ✓ packages/runtime-core/__tests__/apiWatch.spec.ts > api: watch > watching single source 1ms
 × packages/runtime-core/__tests__/apiWatch.spec.ts > api: watch > deep watch 5ms
 ↓ packages/runtime-core/__tests__/apiWatch.spec.ts > api: watch > flush sync [skipped]
"""

REDIS = """[ok]: SET and GET an item (2 ms)
[ok]: DEL against a single item (1 ms)
[err]: INCR against non existing key in tests/unit/type/incr.tcl
Expected '2' to equal '1'
[skip]: SWAPDB is not supported by this server
"""

JQ = """PASS: tests/jqtest
PASS: tests/mantest
FAIL: tests/onigtest
"""

DOCTEST = """<?xml version="1.0" encoding="UTF-8"?>
<doctest binary="./tests/test-json">
  <TestSuite>
    <TestCase name="parser" filename="tests/src/unit-parse.cpp" line="10">
      <SubCase name="null" filename="tests/src/unit-parse.cpp" line="12">
        <Expression success="true" type="CHECK"><Original>parse("null")</Original></Expression>
      </SubCase>
      <SubCase name="number" filename="tests/src/unit-parse.cpp" line="20">
        <Expression success="false" type="CHECK"><Original>parse("1e5")</Original></Expression>
      </SubCase>
      <SubCase name="string" filename="tests/src/unit-parse.cpp" line="30">
        <Expression success="true" type="CHECK"><Original>parse("a")</Original></Expression>
      </SubCase>
    </TestCase>
  </TestSuite>
</doctest>
"""

MICROPYTHON = """pass  basics/int_big.py
pass  basics/list_slice.py
FAIL  basics/string_format.py
skip  extmod/ussl_basic.py
"""

GOOGLETEST = """[==========] Running 3 tests from 1 test suite.
[ RUN      ] FormatTest.Args
[       OK ] FormatTest.Args (0 ms)
[ RUN      ] FormatTest.Width
[  FAILED  ] FormatTest.Width (1 ms)
[ RUN      ] FormatTest.Precision
[       OK ] FormatTest.Precision (0 ms)
"""

GOTEST = """=== RUN   TestParse
--- PASS: TestParse (0.00s)
=== RUN   TestRender
--- FAIL: TestRender (0.01s)
=== RUN   TestCache
--- SKIP: TestCache (0.00s)
=== RUN   TestRoute
--- PASS: TestRoute (0.00s)
FAIL
"""

MAVEN = """+ mvn test -B -Dtest=com.google.gson.GsonTest#testToJson
[INFO] BUILD SUCCESS
+ mvn test -B -Dtest=com.google.gson.GsonTest#testFromJson
[INFO] BUILD FAILURE
+ mvn test -B -Dtest=com.google.gson.JsonParserTest#testParse
[INFO] BUILD SUCCESS
"""

ANT = """    [junit] [PASS] lombok.TestConfiguration.testDisplayAll
    [junit] [FAIL] lombok.TestJavac.testGetter
    [junit] [ERR] lombok.TestEcj.testSetter
    [junit] [PASS] lombok.TestJavac.testBuilder
"""

GRADLE = """org.apache.lucene.search.TestBoolean > testEmpty PASSED
org.apache.lucene.search.TestBoolean > testNested FAILED
org.apache.lucene.index.TestMerge > testForceMerge
PASSED
"""

PHPUNIT = """Spreadsheet (PhpOffice\\PhpSpreadsheet\\Tests\\Spreadsheet)
 ✔ Get sheet by name
 ✘ Remove sheet
 ↩ Add external sheet
Calculation (PhpOffice\\PhpSpreadsheet\\Tests\\Calculation)
 ✔ Binary comparison operation
"""

MINITEST = """TestSite#test_: creating sites should read posts. = 0.12 s = .
TestSite#test_: creating sites should write files. = 0.05 s = F
TestFilters#test_: filters should slugify. = 0.00 s = .
"""

CUCUMBER = """Feature: Create sites .........F
Feature: Site configuration ..........
"""

RUBY_UNIT = """test: parse config file:                          .: (0.001)
test: reject invalid plugin:                      F: (0.002)
test: skip on windows:                            O: (0.000)
"""

RSPEC = """Fastlane::Actions::GitBranch returns the branch - passed
Fastlane::Actions::GitBranch handles detached HEAD - failed
Fastlane::Lane runs actions - passed
"""

CARGO = """running 3 tests
test parse::tests::empty ... ok
test parse::tests::unicode ... FAILED
test walk::tests::hidden ... ok
"""

PLOTLY = """  - Plotly.react :
    * updates traces : ok
    * keeps layout : ok
  - Plotly.restyle :
    * restyles markers : failed (expected 2 got 3)
"""

EMOTION = """PASS packages/css/test/index.js
FAIL packages/styled/test/prop-filtering.js
PASS packages/react/test/css.js
"""

# parser name → (context, runner output, exit code)
# Cypress with the mocha JSON reporter: one report per spec, each followed by a line naming
# the next spec (or the run's end) with a "../.." path, which is where the parser splits
CYPRESS = """  Running:  ../../packages/app/cypress/e2e/settings.cy.ts                       (1 of 2)
{
  "stats": {
    "suites": 1,
    "tests": 3,
    "passes": 2,
    "pending": 0,
    "failures": 1
  },
  "tests": [
    {
      "title": "shows the project id",
      "fullTitle": "Settings shows the project id",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    },
    {
      "title": "copies the key",
      "fullTitle": "Settings copies the key",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    },
    {
      "title": "hides the key",
      "fullTitle": "Settings hides the key",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    }
  ],
  "pending": [],
  "failures": [
    {
      "title": "hides the key",
      "fullTitle": "Settings hides the key",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {
        "message": "expected true to be false"
      }
    }
  ],
  "passes": [
    {
      "title": "shows the project id",
      "fullTitle": "Settings shows the project id",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    },
    {
      "title": "copies the key",
      "fullTitle": "Settings copies the key",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    }
  ]
}
  Running:  ../../packages/app/cypress/e2e/runs.cy.ts                           (2 of 2)
{
  "stats": {
    "suites": 1,
    "tests": 2,
    "passes": 1,
    "pending": 0,
    "failures": 1
  },
  "tests": [
    {
      "title": "lists the runs",
      "fullTitle": "Runs lists the runs",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    },
    {
      "title": "opens a run",
      "fullTitle": "Runs opens a run",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    }
  ],
  "pending": [],
  "failures": [
    {
      "title": "opens a run",
      "fullTitle": "Runs opens a run",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {
        "message": "expected true to be false"
      }
    }
  ],
  "passes": [
    {
      "title": "lists the runs",
      "fullTitle": "Runs lists the runs",
      "file": null,
      "duration": 12,
      "currentRetry": 0,
      "err": {}
    }
  ]
}
  (Run Finished)  ../../packages/app/cypress/e2e  2 of 2 failed
"""

LOGS: dict[str, tuple[dict[str, str], str, int]] = {
    "parse_log_django": ({"repo": "django/django", "version": "5.0"}, DJANGO, 1),
    "parse_log_calypso": ({"repo": "Automattic/wp-calypso", "version": "10.0"}, CALYPSO, 1),
    "parse_log_bpmn_js": ({"repo": "bpmn-io/bpmn-js", "eval_type": "fail_only"}, BPMN, 1),
    "parse_log_carbon": ({"repo": "carbon-design-system/carbon"}, CARBON, 1),
    "parse_log_eslint": ({"repo": "eslint/eslint", "eval_type": "fail_only"}, ESLINT, 1),
    "parse_log_grommet": ({"repo": "grommet/grommet"}, CARBON, 1),
    "parse_log_highlightjs": ({"repo": "highlightjs/highlight.js"}, MOCHA_SPEC, 1),
    "parse_log_lighthouse": ({"repo": "GoogleChrome/lighthouse", "version": "10.0"},
                             LIGHTHOUSE_MOCHA, 1),
    "parse_log_next": ({"repo": "alibaba-fusion/next", "version": "1.26"}, NEXT_V1, 1),
    "parse_log_openlayers": ({"repo": "openlayers/openlayers", "eval_type": "fail_only"},
                             OPENLAYERS, 1),
    "parse_log_prismjs": ({"repo": "PrismJS/prism"}, PRISM, 1),
    "parse_log_quarto_cli": ({"repo": "quarto-dev/quarto-cli"}, QUARTO, 1),
    "parse_log_chart_js": ({"repo": "chartjs/Chart.js", "eval_type": "fail_only"},
                           CHROME_FAILED, 1),
    "parse_log_marked": ({"repo": "markedjs/marked", "eval_type": "fail_only"}, MARKED, 1),
    "parse_log_p5js": ({"repo": "processing/p5.js", "eval_type": "fail_only"}, P5JS, 1),
    "parse_log_react_pdf": ({"repo": "diegomura/react-pdf"}, CARBON, 1),
    "parse_log_jest": ({"repo": "babel/babel"}, JEST_VERBOSE, 1),
    "parse_log_jest_json": ({"repo": "immutable-js/immutable-js"}, JEST_JSON, 1),
    "parse_log_vitest": ({"repo": "vuejs/core"}, VITEST, 1),
    "parse_log_karma": ({"repo": "preactjs/preact"}, KARMA, 1),
    "parse_log_immutable_js": ({"repo": "immutable-js/immutable-js",
                                "instance_id": "immutable-js__immutable-js-2006"}, JEST_VERBOSE, 1),
    "parse_log_redis": ({"repo": "redis/redis"}, REDIS, 1),
    "parse_log_jq": ({"repo": "jqlang/jq"}, JQ, 1),
    "parse_log_doctest": ({"repo": "nlohmann/json"}, DOCTEST, 1),
    "parse_log_micropython_test": ({"repo": "micropython/micropython"}, MICROPYTHON, 1),
    "parse_log_googletest": ({"repo": "fmtlib/fmt"}, GOOGLETEST, 1),
    "parse_log_gotest": ({"repo": "gin-gonic/gin"}, GOTEST, 1),
    "parse_log_maven": ({"repo": "google/gson"}, MAVEN, 1),
    "parse_log_ant": ({"repo": "projectlombok/lombok"}, ANT, 1),
    "parse_log_gradle_custom": ({"repo": "apache/lucene"}, GRADLE, 1),
    "parse_log_phpunit": ({"repo": "phpoffice/phpspreadsheet"}, PHPUNIT, 1),
    "parse_log_minitest": ({"repo": "jekyll/jekyll"}, MINITEST, 1),
    "parse_log_cucumber": ({"repo": "jekyll/jekyll"}, CUCUMBER, 1),
    "parse_log_ruby_unit": ({"repo": "fluent/fluentd"}, RUBY_UNIT, 1),
    "parse_log_rspec_transformed_json": ({"repo": "fastlane/fastlane"}, RSPEC, 1),
    "parse_log_jekyll": ({"repo": "jekyll/jekyll", "instance_id": "jekyll__jekyll-9141"},
                         MINITEST, 1),
    "parse_log_cargo": ({"repo": "burntsushi/ripgrep"}, CARGO, 101),
    # named by MAP_REPO_TO_PARSER_JS but not in PARSER_REGISTRY
    "parse_log_cypress": ({"repo": "cypress-io/cypress"}, CYPRESS, 1),
    "parse_plotly_js": ({"repo": "plotly/plotly.js"}, PLOTLY, 1),
    "parse_log_emotion": ({"repo": "emotion-js/emotion"}, EMOTION, 1),
}

# fail-only repositories: a clean run prints only its summary (the parser records failures only)
ALL_PASSED: dict[str, tuple[dict[str, str], str, int]] = {
    "parse_log_chart_js": ({"repo": "chartjs/Chart.js", "eval_type": "fail_only"},
                           CHROME_ALL_PASSED, 0),
    "parse_log_marked": ({"repo": "markedjs/marked", "eval_type": "fail_only"},
                         "Started\n......\n\n6 specs, 0 failures\n", 0),
}
