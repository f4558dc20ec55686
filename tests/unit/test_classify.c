/*
 * test_classify.c -- the default rules of config/journeyd.yaml applied to
 * realistic events of every channel, and the precedence rules of SPEC §2.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "classify.h"

static config_t *cfg;

static void setup(void) {
    char err[512];
    cfg = config_load(JD_SOURCE_DIR "/config/journeyd.yaml", err, sizeof(err));
    cr_assert(cfg, "%s", err);
}

static void teardown(void) { config_free(cfg); }

TestSuite(classify, .init = setup, .fini = teardown);

typedef struct ex {
    ev_type_t type;
    const char *event, *channel, *path, *name;
    const char *phase, *tp;
} ex_t;

static void check(const ex_t *x) {
    event_t ev;
    classification_t cl;
    memset(&ev, 0, sizeof(ev));
    ev.type = x->type;
    ev.event = x->event;
    ev.channel = x->channel;
    ev.page_path = x->path;
    ev.name = x->name;
    classify_event(cfg, &ev, &cl);
    const char *phase = cl.phase >= 0 ? cfg->phases[cl.phase].name : NULL;
    if (x->phase) cr_assert(phase && !strcmp(phase, x->phase), "%s %s: phase %s", x->event ? x->event : "",
                            x->path ? x->path : "", phase ? phase : "none");
    else cr_assert_null(phase, "%s: phase %s", x->event ? x->event : "", phase);
    cr_assert_str_eq(cl.touchpoint, x->tp);
}

Test(classify, default_rules_for_every_channel) {
    static const ex_t cases[] = {
        {EV_TRACK, "Search Result Clicked", "web", NULL, NULL, "search", "search_engine"},
        {EV_TRACK, "Ad Clicked", "app", NULL, NULL, "search", "ads"},
        {EV_TRACK, "Social Post Clicked", "social", NULL, NULL, "search", "social_media"},
        {EV_PAGE, NULL, "web", "/community/topic-3", NULL, "search", "forum"},
        {EV_PAGE, NULL, "web", "/products/sku-9", NULL, "information", "company_site"},
        {EV_TRACK, "Comparison Viewed", "web", NULL, NULL, "information", "comparison_portal"},
        {EV_PAGE, NULL, "web", "/reviews/sku-9", NULL, "information", "reviews"},
        {EV_TRACK, "Advice Call Completed", "phone", NULL, NULL, "information", "phone_advice"},
        {EV_TRACK, "Demo Attended", "store", NULL, NULL, "information", "store_demo"},
        {EV_SCREEN, NULL, "app", NULL, "Product Detail", "information", "app_product"},
        {EV_TRACK, "Product Added", "app", NULL, NULL, "purchase", "cart"},
        {EV_PAGE, NULL, "web", "/checkout/step-2", NULL, "purchase", "checkout"},
        {EV_TRACK, "Checkout Started", "web", NULL, NULL, "purchase", "checkout"},
        {EV_TRACK, "Order Completed", "web", NULL, NULL, "purchase", "web_shop"},
        {EV_TRACK, "Order Completed", "app", NULL, NULL, "purchase", "app_shop"},
        {EV_TRACK, "Order Completed", "phone", NULL, NULL, "purchase", "phone_order"},
        {EV_TRACK, "Order Completed", "store", NULL, NULL, "purchase", "store"},
        {EV_TRACK, "Order Confirmation Opened", "email", NULL, NULL, "loyalty", "order_confirmation"},
        {EV_TRACK, "Order Delivered", "web", NULL, NULL, "loyalty", "delivery"},
        {EV_TRACK, "Chat Started", "chat", NULL, NULL, "loyalty", "support_chat"},
        {EV_TRACK, "Bot Conversation", "chat", NULL, NULL, "loyalty", "service_bot"},
        {EV_SCREEN, NULL, "app", NULL, "Service", "loyalty", "service_app"},
        {EV_TRACK, "Support Call Completed", "phone", NULL, NULL, "loyalty", "phone_support"},
        {EV_TRACK, "Email Opened", "email", NULL, NULL, NULL, "newsletter"},
        /* unclassified: no phase, the channel as touchpoint, else "unknown" */
        {EV_TRACK, "Survey Answered", "web", NULL, NULL, NULL, "web"},
        {EV_TRACK, "Order Completed", "kiosk", NULL, NULL, NULL, "kiosk"},
        {EV_PAGE, NULL, NULL, "/about", NULL, NULL, "unknown"},
        {EV_SCREEN, NULL, "web", NULL, "Product Detail", NULL, "web"},   /* rule wants channel app */
        {EV_PAGE, NULL, "web", "/product", NULL, NULL, "web"},           /* shorter than the prefix */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check(&cases[i]);
}

Test(classify, explicit_phase_and_touchpoint_win) {
    event_t ev;
    classification_t cl;
    char err[128];
    memset(&ev, 0, sizeof(ev));
    ev.type = EV_TRACK;
    ev.event = "Product Added";
    ev.phase = "loyalty";
    ev.touchpoint = "kiosk_cart";
    classify_event(cfg, &ev, &cl);
    cr_assert_eq(cl.phase, 3);
    cr_assert_str_eq(cl.touchpoint, "kiosk_cart");
    cr_assert_eq(cl.rule_line, cfg->rules[10].line);
    cr_assert_eq(classify_check(cfg, &ev, err, sizeof(err)), 0);
    ev.phase = "checkout";
    cr_assert_eq(classify_check(cfg, &ev, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "properties.phase: 'checkout' is not a configured phase");
}

Test(classify, first_match_wins) {
    /* "/checkout" page rule (purchase/checkout) comes before nothing else that
     * matches; a track "Checkout Started" on a /products page stays a track rule */
    event_t ev;
    classification_t cl;
    memset(&ev, 0, sizeof(ev));
    ev.type = EV_TRACK;
    ev.event = "Checkout Started";
    ev.page_path = "/products/sku-1";
    classify_event(cfg, &ev, &cl);
    cr_assert_str_eq(cl.touchpoint, "checkout");
    cr_assert_eq(cl.phase, 2);
    /* touchpoint-based rule match */
    char *saved = cfg->rules[0].event;
    cfg->rules[0].event = NULL;
    cfg->rules[0].touchpoint_in = "partner_widget";
    ev.touchpoint = "partner_widget";
    ev.event = "Anything";
    ev.type = EV_TRACK;
    classify_event(cfg, &ev, &cl);
    cr_assert_eq(cl.phase, 0);
    cr_assert_eq(cl.rule_line, cfg->rules[0].line);
    cfg->rules[0].touchpoint_in = NULL;
    cfg->rules[0].event = saved;
}
